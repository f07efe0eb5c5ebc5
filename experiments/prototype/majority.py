"""
PyTorch prototype of the controlled "majority" task (src/data/majority.ts), used to choose its design and the demo's
budget before running it on our WGSL trainer: a GPT-2 of the demo's shape (2 layers, 2 heads, width 64), the
trainer's AdamW (betas 0.9/0.95, weight decay 0.1 on matrices, clip 1.0), linear warm-up then cosine to 10%, loss
the mean over weighted target tokens (prompt weight 0), one token per word (the compact BPE learns each name as one
token). Its world and questions are drawn with Python's random, not the generator's stream, so figures agree in
kind, not item for item. Conditions: none, after, after-shuffled (tokens), after-key (the question's colour words in
order), after-keysym (the question's names: what idf key-k keeps), before (greedy CoT at test time).

usage: /usr/bin/python3 experiments/prototype/majority.py '{"S":40,"k":3,"ntr":1600,"steps":200,"B":8,"lr":0.008}' none,after,before 3
(S names, k per question, ntr training questions, steps of B; the last argument is the number of seeds)
"""
import torch, torch.nn as nn, torch.nn.functional as F, random, math, sys, json, itertools
torch.set_num_threads(1)
COL=["red","blue","green","yellow","black"]; LET="ABCDE"
def make_world(S, seed=123):
    r=random.Random(seed)
    on=list("bdfgklmnprstvz"); vo=list("aeiou"); co=list("xpnl")
    names=[o+v+c for o in on for v in vo for c in co]; r.shuffle(names)
    names=names[:S]; cls=[i%5 for i in range(S)]; r.shuffle(cls)
    return names, cls
def make_items(n, S, k, seed, world):
    names, cls = world; r=random.Random(seed); out=[]
    while len(out)<n:
        idx=r.sample(range(S),k); c=[cls[i] for i in idx]
        cnt=[c.count(j) for j in range(5)]; m=max(cnt)
        if cnt.count(m)>1: continue
        lab=cnt.index(m); out.append((idx,lab))
    return out
class Vocab:
    def __init__(s): s.t={}; s.l=[]
    def __call__(s,w):
        if w not in s.t: s.t[w]=len(s.l); s.l.append(w)
        return s.t[w]
def encode(item, world, cond, V, rng, key_k=None):
    names, cls = world; idx, lab = item
    prompt=[V(names[i]) for i in idx]+[V("?")]
    label=[V(" ("),V(LET[lab]),V(")")]
    rat=[]
    for i in idx: rat += [V(names[i]),V("is"),V(COL[cls[i]]),V(".")]
    rat += [V("most"),V("are"),V(COL[lab]),V(".")]
    if cond=="none": tgt=label; w=[1]*len(label)
    elif cond=="after": tgt=label+rat; w=[1]*3+[1]*len(rat)
    elif cond=="after-shuffled":
        r=rat[:]; rng.shuffle(r); tgt=label+r; w=[1]*(3+len(r))
    elif cond=="after-key":   # class words only, in order
        r=[V(COL[cls[i]]) for i in idx]; tgt=label+r; w=[1]*(3+len(r))
    elif cond=="after-keysym":
        r=[V(names[i]) for i in idx][:key_k]; tgt=label+r; w=[1]*(3+len(r))
    elif cond=="before":
        fmt=[V("So"),V("the"),V("answer"),V("is")]
        tgt=rat+fmt+label; w=[1]*len(tgt)
    ids=prompt+tgt+[V("<eot>")]; w=w+[1]
    # weight[i] for predicting ids[i]; prompt 0
    ww=[0]*len(prompt)+w
    return ids, ww, len(prompt)
class Block(nn.Module):
    def __init__(s,d,h):
        super().__init__(); s.ln1=nn.LayerNorm(d); s.ln2=nn.LayerNorm(d); s.h=h
        s.qkv=nn.Linear(d,3*d); s.proj=nn.Linear(d,d); s.fc=nn.Linear(d,4*d); s.fc2=nn.Linear(4*d,d)
    def forward(s,x):
        B,T,D=x.shape; q,k,v=s.qkv(s.ln1(x)).split(D,2)
        f=lambda t:t.view(B,T,s.h,D//s.h).transpose(1,2)
        y=F.scaled_dot_product_attention(f(q),f(k),f(v),is_causal=True) if hasattr(F,'scaled_dot_product_attention') else None
        if y is None:
            q,k,v=f(q),f(k),f(v); a=(q@k.transpose(-1,-2))/math.sqrt(D//s.h)
            a=a.masked_fill(torch.triu(torch.ones(T,T,dtype=torch.bool),1),-1e9).softmax(-1); y=a@v
        x=x+s.proj(y.transpose(1,2).reshape(B,T,D))
        return x+s.fc2(F.gelu(s.fc(s.ln2(x))))
class GPT(nn.Module):
    def __init__(s,V,d=64,L=2,h=2,T=128):
        super().__init__(); s.wte=nn.Embedding(V,d); s.wpe=nn.Embedding(T,d)
        s.blocks=nn.ModuleList([Block(d,h) for _ in range(L)]); s.lnf=nn.LayerNorm(d)
        for n,p in s.named_parameters():
            if p.dim()==2: nn.init.normal_(p,0,0.02/ (math.sqrt(2*L) if ('proj' in n or 'fc2' in n) else 1))
            elif 'ln' not in n: nn.init.zeros_(p)
    def forward(s,x):
        h=s.wte(x)+s.wpe(torch.arange(x.shape[1]))
        for b in s.blocks: h=b(h)
        return s.lnf(h)@s.wte.weight.T
def run(cfg, cond, seed):
    S,k,ntr,steps,B,lr=cfg['S'],cfg['k'],cfg['ntr'],cfg['steps'],cfg['B'],cfg['lr']
    world=make_world(S, cfg.get('wseed',123)); V=Vocab()
    for w in ["?"," (",")","<eot>","is",".","most","are","So","the","answer"]+list(LET)+COL+world[0]: V(w)
    tr=make_items(ntr,S,k,1,world); te=make_items(cfg.get('nte',200),S,k,2,world)
    rng=random.Random(seed)
    data=[encode(it,world,cond,V,rng) for it in tr]
    torch.manual_seed(seed); m=GPT(len(V.l),d=cfg.get('d',64),L=cfg.get('L',2),h=cfg.get('h',2))
    decay=[p for n,p in m.named_parameters() if p.dim()==2]; nod=[p for n,p in m.named_parameters() if p.dim()<2]
    opt=torch.optim.AdamW([{'params':decay,'weight_decay':0.1},{'params':nod,'weight_decay':0.0}],lr=lr,betas=(0.9,0.95))
    warm=cfg.get('warm',10); order=[]; ep=0
    for st in range(1,steps+1):
        if len(order)<B:
            p=list(range(len(data))); random.Random(seed*1000+ep).shuffle(p); order+=p; ep+=1
        batch=[data[i] for i in order[:B]]; order=order[B:]
        T=max(len(b[0]) for b in batch)-1
        x=torch.zeros(B,T,dtype=torch.long); y=torch.zeros(B,T,dtype=torch.long); w=torch.zeros(B,T)
        for i,(ids,ww,_) in enumerate(batch):
            n=len(ids)-1; x[i,:n]=torch.tensor(ids[:-1]); y[i,:n]=torch.tensor(ids[1:]); w[i,:n]=torch.tensor(ww[1:],dtype=torch.float)
        a=cfg.get('alpha',1.0)
        lr_t= lr*st/warm if st<=warm else lr*(0.1+0.9*0.5*(1+math.cos(math.pi*(st-warm)/max(1,steps-warm))))
        for g in opt.param_groups: g['lr']=lr_t
        loss=(F.cross_entropy(m(x).reshape(-1,len(V.l)),y.reshape(-1),reduction='none')*w.reshape(-1)).sum()/w.sum()
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(),1.0); opt.step()
    # eval
    m.eval(); correct=0
    letters=[V.t[c] for c in LET]
    with torch.no_grad():
        if cond!="before":
            X=[]; 
            for it in te:
                ids,_,pl=encode(it,world,"none",V,rng); X.append(ids[:pl+1])  # prompt + " ("
            X=torch.tensor(X); lg=m(X)[:,-1,:]
            pred=lg.argmax(-1); labs=torch.tensor([l for _,l in te])
            gen_ok=(pred==torch.tensor(letters)[labs]).float().mean().item()
            return gen_ok
        else:
            X=torch.tensor([encode(it,world,"none",V,rng)[0][:k+1] for it in te])
            cur=X
            for t in range(4*k+4+7):
                nxt=m(cur)[:,-1,:].argmax(-1,keepdim=True); cur=torch.cat([cur,nxt],1)
            labs=[l for _,l in te]; ok=0
            for i in range(len(te)):
                seq=cur[i].tolist()
                # find " (" then letter
                try:
                    j=seq.index(V.t[" ("],k+1); ok+= (j+1<len(seq) and seq[j+1]==letters[labs[i]])
                except ValueError: pass
            return ok/len(te)
if __name__=="__main__":
    cfg=json.loads(sys.argv[1]); conds=sys.argv[2].split(','); seeds=range(int(sys.argv[3]) if len(sys.argv)>3 else 3)
    import time; t=time.time()
    for c in conds:
        r=[run(cfg,c,s) for s in seeds]
        print(f"{c:14s}", " ".join(f"{x:.2f}" for x in r), f"mean {sum(r)/len(r):.3f}", flush=True)
    print("time",time.time()-t)
