#!/usr/bin/env python3
"""Independent numpy implementations of LogME, H-score (Ledoit-Wolf shrinkage), LEEP, NCE and
the Fréchet distance, written from the papers, producing golden values for tests/metafeatures.rs.

Inputs: random features made here, and real features dumped by
`graft inspect --data examples/cifar3 --backbone resnet8-cifar10 --dump-features tests/golden/real`
(pooled features of every group, the source head's softmax, labels).

    python3 tests/golden/metafeatures_golden.py   # writes tests/golden/metafeatures.json
"""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def logme(f, y):
    """You et al. 2021, Algorithm 1: evidence maximisation for each one-hot target column."""
    f = f.astype(np.float64)
    n, d = f.shape
    # eigenvalues of F^T F (all d of them) and the projections of y on the left singular vectors
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sig_nz = s ** 2
    sigma = np.zeros(d)
    sigma[: len(sig_nz)] = sig_nz
    keep = sig_nz > 1e-10
    evidences = []
    for c in range(y.max() + 1):
        yc = (y == c).astype(np.float64)
        x = u.T @ yc
        x = np.where(keep, x, 0.0)
        x2 = x ** 2
        res_x2 = max(yc @ yc - x2.sum(), 0.0)
        s_k = sig_nz
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (s_k / (s_k + t)).sum()
            m2 = (s_k * x2 / (t + s_k) ** 2).sum()
            res2 = (x2 / (1 + s_k / t) ** 2).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t < 0.01:
                break
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * sigma).sum()
              - beta / 2 * (res2 + 1e-5) - alpha / 2 * (m2 + 1e-5) - n / 2 * np.log(2 * np.pi))
        evidences.append(ev / n)
    return float(np.mean(evidences))


def ledoit_wolf_cov(x):
    try:
        from sklearn.covariance import ledoit_wolf
        cov, _ = ledoit_wolf(x, assume_centered=True)
        return cov
    except ImportError:
        raise SystemExit("pip install scikit-learn")


def hscore(f, y):
    f = f.astype(np.float64)
    xc = f - f.mean(0)
    cov_f = ledoit_wolf_cov(xc)
    g = np.zeros_like(xc)
    for c in np.unique(y):
        g[y == c] = xc[y == c].mean(0)
    cov_g = g.T @ g / len(y)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))


def leep(theta, y):
    n, z = theta.shape
    k = y.max() + 1
    joint = np.zeros((k, z))
    for c in range(k):
        joint[c] = theta[y == c].sum(0) / n
    cond = joint / joint.sum(0, keepdims=True)
    return float(np.mean(np.log((theta * cond[y]).sum(1))))


def nce(theta, y):
    n, z = theta.shape
    zh = theta.argmax(1)
    joint = np.zeros((y.max() + 1, z))
    np.add.at(joint, (y, zh), 1.0 / n)
    pz = joint.sum(0)
    nz = joint > 0
    return float((joint[nz] * np.log((joint / np.where(pz > 0, pz, 1))[nz])).sum())


def frechet(m1, s1, m2, s2):
    from scipy.linalg import sqrtm
    covmean = sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def main():
    rng = np.random.default_rng(7)
    out = {"random": [], "real": []}
    os.makedirs(os.path.join(HERE, "random"), exist_ok=True)
    for i, (n, d, k) in enumerate([(60, 8, 3), (40, 64, 4), (200, 16, 5)]):
        y = rng.integers(0, k, n)
        y[:k] = np.arange(k)
        f = rng.normal(size=(n, d)) + 0.7 * rng.normal(size=(k, d))[y]
        logits = rng.normal(size=(n, 10)) + 2 * np.eye(10)[y % 10]
        theta = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        g = rng.normal(size=(150, d)) * 1.3 + 0.2
        m1, s1 = f.mean(0), np.cov(f.T, bias=True)
        m2, s2 = g.mean(0), np.cov(g.T, bias=True)
        base = os.path.join(HERE, "random", f"case{i}")
        np.save(base + "_f.npy", f)
        np.save(base + "_y.npy", y.astype(np.int64))
        np.save(base + "_theta.npy", theta)
        np.save(base + "_g.npy", g)
        out["random"].append({"case": f"case{i}", "logme": logme(f, y), "hscore": hscore(f, y), "leep": leep(theta, y),
                              "nce": nce(theta, y), "frechet": frechet(m1, s1, m2, s2)})
    real = os.path.join(HERE, "real")
    if os.path.isdir(real):
        y = np.load(os.path.join(real, "labels.npy"))
        theta = np.load(os.path.join(real, "theta.npy"))
        for name in sorted(os.listdir(real)):
            if name.startswith("group_"):
                f = np.load(os.path.join(real, name))
                out["real"].append({"file": name, "logme": logme(f, y), "hscore": hscore(f, y)})
        out["real_leep"] = leep(theta, y)
        out["real_nce"] = nce(theta, y)
    with open(os.path.join(HERE, "metafeatures.json"), "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
