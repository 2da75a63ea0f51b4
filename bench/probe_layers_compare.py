"""Probe features, step 2: for each seed's ``OUT/layers<SEED>.npz`` (bench/probe_layers_features.py), fit the
label-word head on (a) the final hidden state with the verbalizer rows as prior (what ``dfo finetune --probe``
does), (b) the mean of the standardised states of all layers / of the upper half, (c) single layers, each with
its ridge strength by 5-fold cross-validation on the training set; print the test accuracy of each. Test is read
only to report. Run as session 11 ran it (bench/results/probe_layers.md):

    OMP_NUM_THREADS=1 python bench/probe_layers_compare.py OUT SEED [SEED ...]
"""
import numpy as np, sys
from scipy.optimize import minimize
from scipy.special import log_softmax
LAMS = (1.0, 0.3, 0.1, 0.03, 0.01)
def fit(X, y, lam, W0, b0=None):
    n, d = X.shape; c = W0.shape[0]
    def f(p):
        W = p[:c*d].reshape(c, d); b = p[c*d:]
        L = log_softmax(X @ W.T + b, 1); G = np.exp(L); G[np.arange(n), y] -= 1; G /= n
        return -L[np.arange(n), y].mean() + 0.5*lam*((W-W0)**2).sum(), np.concatenate([(G.T @ X + lam*(W-W0)).ravel(), G.sum(0)])
    r = minimize(f, np.concatenate([W0.ravel(), np.zeros(c)]), jac=True, method="L-BFGS-B", options={"maxiter": 1000})
    return r.x[:c*d].reshape(c, d), r.x[c*d:]
acc = lambda Wb, X, y: float(((X @ Wb[0].T + Wb[1]).argmax(1) == y).mean())
def cv_choose(A, y, W0, folds):
    res = [(np.mean([acc(fit(A[folds!=k], y[folds!=k], lam, W0), A[folds==k], y[folds==k]) for k in range(5)]), lam) for lam in LAMS]
    return max(res)
OUT = sys.argv[1]
for seed in sys.argv[2:]:
    z = np.load(f"{OUT}/layers{seed}.npz"); Xtr, ytr, Xte, yte = z["Xtr"], z["ytr"], z["Xte"], z["yte"]
    W0 = z["W0"]
    folds = np.random.default_rng(int(seed)).permutation(len(ytr)) % 5
    L = Xtr.shape[1]
    cands = {}
    cands["last (verbalizer prior)"] = (Xtr[:, -1], Xte[:, -1], W0)
    for sel_name, sel in [("mean all", list(range(1, L))), ("mean upper half", list(range(L//2, L)))] + [(f"layer {l}", [l]) for l in range(L//2, L, 2)]:
        mu, sd = Xtr[:, sel].mean(0), Xtr[:, sel].std(0) + 1e-6
        S = lambda X: ((X[:, sel] - mu) / sd).mean(1)
        cands[sel_name] = (S(Xtr), S(Xte), np.zeros((2, Xtr.shape[2])))
    rows = []
    for name, (A, T, w0) in cands.items():
        cv, lam = cv_choose(A, ytr, w0, folds)
        rows.append((cv, name, lam, acc(fit(A, ytr, lam, w0), T, yte)))
    for cv, name, lam, te in rows:
        print(f"seed {seed} {name:25s} cv {cv:.3f} lam {lam:g} test {te:.3f}")
    best = max(rows[1:], key=lambda r: r[0])
    print(f"seed {seed} CV-CHOICE(any) -> {max(rows)[1]} test {max(rows)[3]:.3f};  CV-CHOICE(layers) -> {best[1]} test {best[3]:.3f}", flush=True)
