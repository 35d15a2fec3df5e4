"""Multi-kernel Gaussian MMD between two sample sets, batched over independent problems.

DA-WSOL, CVPR 2022, arXiv:2203.01714 (domain-adaptive localization loss L_d), with the kernel of
DAN (Long et al., ICML 2015): k(a, b) = sum_q exp(-||a - b||^2 / (sigma * mul^q)), q = 0..num-1.

The bandwidth sigma is the mean pairwise squared distance over the pooled 2n samples (off-diagonal,
so divided by (2n)^2 - 2n), divided by mul^(num // 2) so the kernels are centred on it. It is
computed without gradient, as in DA-WSOL's ``guassian_kernel`` (bandwidth from ``.data``).
"""

from __future__ import annotations

import torch


def pooled_sq_distances(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances among the pooled samples.

    Args:
        source: ``(B, n, D)``.
        target: ``(B, m, D)``.

    Returns:
        ``(B, n+m, n+m)``, index i < n for source samples, n + j for target sample j.
    """
    total = torch.cat([source, target], dim=1)  # (B, n+m, D)
    sq = (total * total).sum(-1)  # (B, n+m)
    dist = sq[:, :, None] + sq[:, None, :] - 2.0 * total @ total.transpose(1, 2)  # (B, n+m, n+m)
    return dist.clamp_min(0.0)


def gaussian_kernels(dist: torch.Tensor, *, kernel_mul: float = 2.0, kernel_num: int = 5) -> torch.Tensor:
    """Sum of ``kernel_num`` Gaussian kernels on a batch of squared-distance matrices ``(B, N, N)``."""
    n = dist.shape[-1]
    with torch.no_grad():
        sigma = dist.sum(dim=(1, 2)) / (n * n - n)  # (B,)
        sigma = sigma / kernel_mul ** (kernel_num // 2)
        sigma = sigma.clamp_min(torch.finfo(dist.dtype).tiny)  # identical samples: distances 0, kernel 1
    scales = sigma[:, None] * kernel_mul ** torch.arange(kernel_num, device=dist.device, dtype=dist.dtype)  # (B, K)
    return torch.exp(-dist[:, None] / scales[:, :, None, None]).sum(1)  # (B, K, N, N) -> (B, N, N)


def mmd_linear(source: torch.Tensor, target: torch.Tensor, *, kernel_mul: float = 2.0,
               kernel_num: int = 5) -> torch.Tensor:
    """Linear-time MMD^2 estimate per problem (DA-WSOL's ``mmd_rbf_accelerate``).

    With n paired samples, (1/n) sum_j [k(s_j, s_j+1) + k(t_j, t_j+1) - k(s_j, t_j+1) - k(s_j+1, t_j)],
    indices modulo n. The bandwidth still uses all pooled pairwise distances (module docstring).

    Args:
        source: ``(B, n, D)`` samples of S (with n >= 2).
        target: ``(B, n, D)`` samples of T, the same n.
        kernel_mul: ratio between consecutive bandwidths.
        kernel_num: number of kernels.

    Returns:
        ``(B,)`` estimates (can be slightly negative).
    """
    if source.shape != target.shape or source.dim() != 3:
        raise ValueError(f"mmd_linear needs equal (B, n, D) shapes, got {tuple(source.shape)}, {tuple(target.shape)}")
    n = source.shape[1]
    if n < 2:
        raise ValueError(f"mmd_linear needs at least 2 samples per set, got {n}")
    k = gaussian_kernels(pooled_sq_distances(source, target), kernel_mul=kernel_mul, kernel_num=kernel_num)
    i = torch.arange(n, device=source.device)
    j = (i + 1) % n
    terms = k[:, i, j] + k[:, n + i, n + j] - k[:, i, n + j] - k[:, j, n + i]  # (B, n)
    return terms.mean(dim=1)


def mmd_quadratic(source: torch.Tensor, target: torch.Tensor, *, kernel_mul: float = 2.0,
                  kernel_num: int = 5) -> torch.Tensor:
    """Biased quadratic-time MMD^2 per problem: mean(K_ss) + mean(K_tt) - 2 mean(K_st).

    Args:
        source: ``(B, n, D)``.
        target: ``(B, m, D)``.

    Returns:
        ``(B,)`` estimates (>= 0 up to rounding).
    """
    n = source.shape[1]
    k = gaussian_kernels(pooled_sq_distances(source, target), kernel_mul=kernel_mul, kernel_num=kernel_num)
    k_ss = k[:, :n, :n].mean(dim=(1, 2))
    k_tt = k[:, n:, n:].mean(dim=(1, 2))
    k_st = k[:, :n, n:].mean(dim=(1, 2))
    return k_ss + k_tt - 2.0 * k_st
