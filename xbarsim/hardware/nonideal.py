"""Static device non-idealities: the models behind :class:`~xbarsim.config.device.DeviceCard`'s
non-ideal fields (docs/nonidealities.md documents each one).

Static effects (programming variation, finite levels, stuck-at faults, drift) change the
conductances once, when the hardware is built: they end up in the effective weights the engine
adds up. Wire resistance and I-V nonlinearity (a nodal solve per tile) live in
:mod:`xbarsim.hardware.irdrop`; dynamic effects (read noise, IFC leak, comparator offsets) act in
the cycle loop (:mod:`xbarsim.engine.ifc`, ``xbarsim.engine.kernels.layer_nonideal``).

Every random draw is keyed by ``(run seed, layer index, purpose)`` — numpy ``Generator`` s seeded
with that tuple for static draws, a counter-based hash for per-cycle draws — never global state.
"""

from __future__ import annotations

import numpy as np

# ------------------------------------------------------------------------------------------------
# Static draws: one numpy Generator per (run seed, layer, purpose)
# ------------------------------------------------------------------------------------------------

PURPOSES = {"variation": 1, "stuck": 2, "drift": 3, "threshold": 4, "comparator": 5}
_MASK64 = (1 << 64) - 1


def static_rng(seed: int, layer_index: int, purpose: str) -> np.random.Generator:
    """The generator of one kind of static draw for one layer: independent of batch, workers and
    of which other non-idealities are on (each purpose has its own stream)."""
    ss = np.random.SeedSequence([int(seed) & _MASK64, int(layer_index), PURPOSES[purpose]])
    return np.random.Generator(np.random.PCG64(ss))


# ------------------------------------------------------------------------------------------------
# Programming: finite levels, variation, drift, stuck-at faults
# ------------------------------------------------------------------------------------------------
def target_levels(levels: np.ndarray, device, weight_bits: int) -> np.ndarray:
    """``|D|`` after finite-level quantization, in weight LSBs (float64, sign kept).

    With ``device.levels = L < 2^(N−1)`` the device has ``L`` equally spaced conductances
    ``G_min + k·(G_max − G_min)/(L−1)``; ``|D|`` goes to the nearest one (``k = rint(|D|·(L−1)/D_max)``,
    halves to even), i.e. to ``k·D_max/(L−1)`` LSBs. Otherwise ``D`` is unchanged.
    """
    d = levels.astype(np.float64)
    top = (1 << (weight_bits - 1)) - 1
    n = device.levels
    if n == 0 or n - 1 >= top:
        return d
    k = np.rint(np.abs(d) * (n - 1) / top)
    return np.sign(d) * k * top / (n - 1)


def program_devices(levels, device, weight_bits: int, seed: int, layer_index: int):
    """Programmed conductances ``(G+, G−, ΔG)`` of one layer's ``(rows, cols)`` levels with the
    card's finite levels, programming variation, drift and stuck-at faults (in that order)."""
    top = (1 << (weight_bits - 1)) - 1
    g_min, g_max = device.g_min_s, device.g_max_s
    dg = (g_max - g_min) / top
    d = target_levels(np.asarray(levels), device, weight_bits)
    g = np.stack([g_min + np.maximum(d, 0.0) * dg, g_min + np.maximum(-d, 0.0) * dg])  # (2, R, C)
    if device.variation_rel > 0:
        z = static_rng(seed, layer_index, "variation").standard_normal(g.shape)
        s = device.variation_rel
        if device.variation_dist == "lognormal":
            s_ln = np.sqrt(np.log1p(s * s))
            g = g * np.exp(s_ln * z - 0.5 * s_ln * s_ln)
        else:
            g = np.maximum(g * (1.0 + s * z), 0.0)
    if device.has_drift:
        nu = np.full(g.shape, device.drift_nu)
        if device.drift_nu_sigma > 0:
            nu = np.maximum(nu + device.drift_nu_sigma
                            * static_rng(seed, layer_index, "drift").standard_normal(g.shape), 0.0)
        g = g * (device.drift_t_s / device.drift_t0_s) ** (-nu)
    if device.stuck_on_rate > 0 or device.stuck_off_rate > 0:
        u = static_rng(seed, layer_index, "stuck").random(g.shape)
        g = np.where(u < device.stuck_on_rate, g_max, g)
        g = np.where((u >= device.stuck_on_rate)
                     & (u < device.stuck_on_rate + device.stuck_off_rate), g_min, g)
    return np.ascontiguousarray(g[0]), np.ascontiguousarray(g[1]), dg
