/**
 * Evaluates the arithmetic a math teacher writes as its answer ("(84 / 2)", "((17 - 7) - 8)"): numbers, + - * /,
 * unary minus and parentheses, nothing else — never `eval`. Returns null for anything it cannot read whole
 * (a truncated "((491 - 21", words, division by zero).
 */
export function evaluateArithmetic(text: string): number | null {
  const tokens = text.match(/\d+(?:\.\d+)?|\.\d+|[-+*/()]|\S/g) ?? [];
  let at = 0;
  const peek = () => tokens[at];

  function primary(): number | null {
    const token = tokens[at++];
    if (token === undefined) return null;
    if (token === "-") {
      const value = primary();
      return value === null ? null : -value;
    }
    if (token === "(") {
      const value = sum();
      return value !== null && tokens[at++] === ")" ? value : null;
    }
    return /^[\d.]/.test(token) ? Number(token) : null;
  }

  function product(): number | null {
    let value = primary();
    while (value !== null && (peek() === "*" || peek() === "/")) {
      const op = tokens[at++];
      const right = primary();
      if (right === null) return null;
      value = op === "*" ? value * right : value / right;
    }
    return value;
  }

  function sum(): number | null {
    let value = product();
    while (value !== null && (peek() === "+" || peek() === "-")) {
      const op = tokens[at++];
      const right = product();
      if (right === null) return null;
      value = op === "+" ? value + right : value - right;
    }
    return value;
  }

  const value = sum();
  return value !== null && at === tokens.length && Number.isFinite(value) ? value : null;
}
