"""Probe features, step 1: the last-token hidden state of every layer of SmolLM2-135M for the SST-2 k = 512 split
of one data seed (train, 128 class-balanced dev, all 872 test), saved as ``OUT/layers<SEED>.npz`` with the label
words' rows ``W0``. 64 forward passes read the training set. Run as session 11 ran it (bench/results/probe_layers.md):

    OMP_NUM_THREADS=1 python bench/probe_layers_features.py SEED OUT DATA_DIR
"""
import sys, time, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from dfo.torch.llm.models import load_lm
from dfo.torch.llm.prompt import PromptClassifier
from dfo.torch.llm.tasks import get_task, load_split, balanced_subset
torch.set_num_threads(1)
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 13
OUT, DATA = sys.argv[2], sys.argv[3]
task = get_task("sst2")
model, tok = load_lm("smollm2")
clf = PromptClassifier(model, tok, task=task, template="review")
train = load_split(task, "train", k=512, data_seed=seed, data_dir=DATA)
dev = balanced_subset(load_split(task, "dev", k=512, data_seed=seed, data_dir=DATA), 128, 2, seed=seed)
test = load_split(task, "test", data_dir=DATA)
print(len(train), len(dev), len(test), flush=True)
passes = 0
def feats(exs, bs=16):
    global passes
    H = []
    with torch.no_grad():
        for i in range(0, len(exs), bs):
            b = clf.encode_batch(exs[i:i+bs])
            out = model(**b.inputs, output_hidden_states=True, use_cache=False, logits_to_keep=1)
            H.append(torch.stack([h[:, -1] for h in out.hidden_states], 1).double()); passes += 1
    return torch.cat(H).numpy(), np.array([e.label for e in exs])
t0=time.time()
Xtr, ytr = feats(train); ptr = passes
Xdv, ydv = feats(dev); Xte, yte = feats(test)
print("train passes", ptr, "feat s", time.time()-t0, flush=True)
W0 = model.lm_head.weight[clf.label_ids].detach().double().numpy()   # (2, d)
np.savez(f"{OUT}/layers{seed}.npz", Xtr=Xtr, ytr=ytr, Xdv=Xdv, ydv=ydv, Xte=Xte, yte=yte, W0=W0)
from scipy.optimize import minimize
from scipy.special import log_softmax
def fit(lam):
    d = W0.shape[1]
    def f(p):
        W = p[:2*d].reshape(2, d); b = p[2*d:]
        Z = Xtr @ W.T + b; L = log_softmax(Z, 1); P = np.exp(L)
        n = len(ytr); loss = -L[np.arange(n), ytr].mean() + 0.5*lam*((W-W0)**2).sum()
        G = P.copy(); G[np.arange(n), ytr] -= 1; G /= n
        gW = G.T @ Xtr + lam*(W-W0); gb = G.sum(0)
        return loss, np.concatenate([gW.ravel(), gb])
    p0 = np.concatenate([W0.ravel(), np.zeros(2)])
    r = minimize(f, p0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    W = r.x[:2*d].reshape(2, d); b = r.x[2*d:]
    return W, b
def acc(W, b, X, y): return float(((X @ W.T + b).argmax(1) == y).mean())
