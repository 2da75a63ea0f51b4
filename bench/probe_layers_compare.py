"""Probe features, step 2: for each seed's ``OUT/layers<SEED>.npz`` (bench/probe_layers_features.py), fit the
label-word head on (a) the final hidden state with the verbalizer rows as prior (what ``dfo finetune --probe``
does), (b) the mean of the standardised states of all layers / of the upper half, (c) single layers, each with
its ridge strength by 5-fold cross-validation on the training set; print the test accuracy of each. Test is read
only to report. Run as session 11 ran it (bench/results/probe_layers.md):

    OMP_NUM_THREADS=1 python bench/probe_layers_compare.py OUT SEED [SEED ...]
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dfo.torch.llm.probe import LAMBDAS, fit_ridge  # noqa: E402  (the fit dfo finetune --probe uses)

LAMS = LAMBDAS


def fit(X, y, lam, W0):
    return fit_ridge(X, y, W0, np.zeros(W0.shape[0]), lam)


def acc(head, X, y):
    return float(((X @ head.weight.T + head.bias).argmax(1) == y).mean())


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
