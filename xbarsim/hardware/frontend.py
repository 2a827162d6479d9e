"""The IFC front end: how a column's charge reaches the membrane when the sense node is not an
ideal virtual ground (``DeviceCard.ifc_front_end``; docs/nonidealities.md derives each term).

A column sees its crossbar as a Norton source: the current ``Σ_i V_i·T_ij`` of an ideal virtual
ground minus ``Y_j·V_x``, where ``V_x`` is the sense-node voltage and ``Y_j`` the column's
self-admittance (:func:`xbarsim.hardware.irdrop.layer_admittance`, both arrays of the pair: the
``G−`` rows are driven with ``−V_read`` into the same node). With a membrane charge ``Q``:

- ``opamp``: an integrator of open-loop gain ``A``; ``V_x = Q/((A+1)·C)``, the comparator sees
  ``A·V_x``, so it trips at ``Q ≥ Q_th·(1 + 1/A)`` — an offset of ``θ/A`` weight LSBs;
- ``capacitor``: a passive capacitor ``C`` on the column; ``V_x = Q/C``, no offset.

Either way ``dQ/dt = I_in(t) − a·Q`` with ``a = Y_j/C_eff`` (``C_eff = (A+1)·C`` or ``C``), the
rows driven at 0 V outside their pulse. Over one cycle (a pulse of width ``t_p`` opening a cycle
``t_c``) this integrates exactly to ``Q ← d·Q + f·W``: ``d = e^{−a·t_c}`` and
``f = (1 − e^{−a·t_p})·e^{−a·(t_c − t_p)}/(a·t_p)``, ``W`` the charge an ideal front end would
have received. The engine applies ``d`` as a per-column leak and folds ``f`` into the weights.
"""

from __future__ import annotations

import numpy as np


def front_end_terms(device, g_ifc_s, theta: int):
    """``(decay, gain, offset_lsb)``: per-column ``d`` and ``f`` (float64, (cols,)) and the
    comparator offset in weight LSBs, for a layer whose columns have admittance ``g_ifc_s``."""
    g = np.asarray(g_ifc_s, np.float64)
    if device.ifc_front_end == "ideal":
        return np.ones_like(g), np.ones_like(g), 0.0
    gain_a = float(device.opamp_gain)
    c_eff = device.c_ifc_f * ((gain_a + 1.0) if device.ifc_front_end == "opamp" else 1.0)
    a = g / c_eff
    tp, tc = device.t_pulse_s, device.t_cycle_s
    decay = np.exp(-a * tc)
    gain = np.where(a * tp > 0, -np.expm1(-a * tp) * np.exp(-a * (tc - tp))
                    / np.where(a * tp > 0, a * tp, 1.0), 1.0)
    offset = theta / gain_a if device.ifc_front_end == "opamp" else 0.0
    return decay, gain, float(offset)


def front_end_matrices(device, y_ifc_s, tile: int, theta: int):
    """The coupled form of :func:`front_end_terms`: ``(E, F, offset_lsb)`` with ``E`` and ``F``
    float64 (cols, cols), block diagonal by column tile of width ``tile``, for a layer whose sense
    nodes have the admittance matrix ``y_ifc_s`` (symmetric positive definite).

    ``dQ/dt = I_in(t) − A·Q`` with ``A = Y/C_eff`` integrates over one cycle to
    ``Q ← E·Q + F·W``: ``E = e^{−A·t_c}``, ``F = e^{−A·(t_c − t_p)}·(A·t_p)⁻¹·(1 − e^{−A·t_p})``,
    both computed from the eigen-decomposition ``A = U·diag(λ)·Uᵀ`` of each block (the scalar
    ``d``, ``f`` of :func:`front_end_terms` applied to each ``λ``)."""
    y = np.asarray(y_ifc_s, np.float64)
    cols = y.shape[0]
    e = np.zeros((cols, cols))
    f = np.zeros((cols, cols))
    offset = 0.0
    for c0 in range(0, cols, tile):
        c1 = min(cols, c0 + tile)
        lam, u = np.linalg.eigh(y[c0:c1, c0:c1])
        decay, gain, offset = front_end_terms(device, lam, theta)
        e[c0:c1, c0:c1] = (u * decay[None, :]) @ u.T
        f[c0:c1, c0:c1] = (u * gain[None, :]) @ u.T
    return e, f, offset
