"""L-BFGS on P independent problems at once, equal per problem to ``torch.optim.LBFGS``.

``torch.optim.LBFGS`` couples everything it optimises: one step size, one history, one set
of break conditions. Running many independent attacks through one instance would mix them,
so this module mirrors its ``step`` (torch 2.x, ``line_search_fn=None``) per problem instead:
each row of a ``[P, n]`` variable matrix has its own history (ring buffers ``[m, P, n]`` with
per-problem lengths), step size, ``n_iter``/``func_evals`` counters and break conditions.
Problems advance in lockstep inside a step; a problem that breaks out of the inner loop is
frozen (its row is no longer evaluated or moved) while the others continue.

Scalars that torch keeps as float32 tensors (``ys``, ``ro``, ``H_diag``, ``al``, ``gtd``, the
first step size) stay in the variables' dtype here; the loss, which torch converts to a Python
float, is kept in float64, so every comparison is made in the precision torch makes it in.
Only reduction order differs (row-wise batched dot products instead of ``torch.dot``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# closure(rows, x_rows) -> (loss [k], grad [k, n]) at the problems ``rows`` (x_rows = x[rows]).
Closure = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row dot products of two [k, n] matrices (torch.dot of each pair of rows); vecdot
    is ~5x faster than a batched [1,n]x[n,1] matmul here."""
    return torch.linalg.vecdot(a, b)


class BatchedLBFGS:
    """``torch.optim.LBFGS(params, lr=lr, ...)`` applied independently to each row of ``x``.

    ``x`` ([P, n]) is updated in place: row p holds problem p's variables flattened in the order
    torch's LBFGS flattens its parameter list. ``step(closure, active)`` performs one
    ``LBFGS.step(closure)`` for every problem where ``active`` is true and returns each one's
    ``orig_loss`` (the loss at the start of the step; NaN for inactive problems).
    """

    def __init__(
        self,
        x: torch.Tensor,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
    ) -> None:
        if x.dim() != 2:
            raise ValueError(f"x must be [P, n], got shape {tuple(x.shape)}")
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        self.x = x
        self.lr = lr
        self.max_iter = max_iter
        self.max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
        self.tolerance_grad = tolerance_grad
        self.tolerance_change = tolerance_change
        self.history_size = history_size
        P, n = x.shape
        long = dict(dtype=torch.long, device=x.device)
        # torch's state["n_iter"] / state["func_evals"], one per problem
        self.n_iter = torch.zeros(P, **long)
        self.func_evals = torch.zeros(P, **long)
        self.d = torch.zeros_like(x)
        self.t = torch.zeros(P, dtype=x.dtype, device=x.device)
        self.prev_flat_grad = torch.zeros_like(x)
        self.prev_loss = torch.zeros(P, dtype=torch.float64, device=x.device)
        self.H_diag = torch.ones(P, dtype=x.dtype, device=x.device)
        # history as rings: logical entry i (0 = oldest) of problem p is at slot (start+i) % m;
        # the [slots, P, n] buffers grow on demand up to m slots
        self.hist_start = torch.zeros(P, **long)
        self.hist_len = torch.zeros(P, **long)
        self._old_dirs: torch.Tensor | None = None  # [slots, P, n]
        self._old_stps: torch.Tensor | None = None
        self._ro = torch.zeros(history_size, P, dtype=x.dtype, device=x.device)

    # -- history --------------------------------------------------------------------------
    def _reserve(self, needed: int) -> None:
        """Grow the ring buffers to hold ``needed`` entries (doubling, at most history_size).

        Until a problem's history is full its entries sit at slots 0..len-1, so growing is a
        copy of the filled slots; the ring only wraps once the buffers have history_size slots.
        """
        have = 0 if self._old_dirs is None else self._old_dirs.shape[0]
        needed = min(needed, self.history_size)  # a full history wraps, it does not grow
        if needed <= have:
            return
        size = min(self.history_size, max(needed, 2 * have, 4))
        P, n = self.x.shape
        dirs, stps = self.x.new_zeros(size, P, n), self.x.new_zeros(size, P, n)
        if self._old_dirs is not None and self._old_stps is not None:
            dirs[:have] = self._old_dirs
            stps[:have] = self._old_stps
        self._old_dirs, self._old_stps = dirs, stps

    def _push(self, rows: torch.Tensor, y: torch.Tensor, s: torch.Tensor, ys: torch.Tensor) -> None:
        """Append (y, s, 1/ys) to the histories of ``rows``, dropping the oldest when full."""
        m = self.history_size
        start, length = self.hist_start[rows], self.hist_len[rows]
        self._reserve(int(length.max()) + 1)
        assert self._old_dirs is not None and self._old_stps is not None
        full = length == m
        slot = torch.where(full, start, (start + length) % m)
        self.hist_start[rows] = torch.where(full, (start + 1) % m, start)
        self.hist_len[rows] = torch.where(full, length, length + 1)
        self._old_dirs[slot, rows] = y
        self._old_stps[slot, rows] = s
        self._ro[slot, rows] = 1.0 / ys

    def _direction(self, rows: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Two-loop recursion: -H g for each problem with its own history and H_diag.

        Problems with shorter histories run over the longest one: their missing entries are
        never-written slots (y = s = 0, ro = 0), which add exact zeros, so no masking is needed.
        """
        P = self.x.shape[0]
        num_old = int(self.hist_len[rows].max()) if rows.numel() else 0
        if num_old == 0:
            return g.neg() * self.H_diag[rows].unsqueeze(1)
        if rows.numel() < P and 2 * rows.numel() >= P and bool((self.hist_start == 0).all()):
            # most rows and no ring wrapped yet: run all rows on views of the buffers (rows
            # not asked for get g = 0, hence r = 0) rather than copy every entry's rows
            g_all = g.new_zeros(P, g.shape[1])
            g_all[rows] = g
            return self._direction(torch.arange(P, device=rows.device), g_all)[rows]
        q = g.neg()
        dirs, stps, ro = self._old_dirs, self._old_stps, self._ro
        assert dirs is not None and stps is not None
        m = self.history_size
        start = self.hist_start[rows]
        all_rows = rows.numel() == P
        same_start = bool((start == start[0]).all())
        first_start = int(start[0])

        views = same_start and all_rows
        y_out, s_out = (None, None) if views else (torch.empty_like(q), torch.empty_like(q))

        def entry(i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """(y_i, s_i, ro_i) of logical history entry i (0 = oldest) for every row: views
            of one slot, or rows gathered into the same two buffers at every call (each
            entry is used before the next is asked for): a fresh copy of every entry made a
            wrapped direction twice as slow here (m=100, P=256: 128 vs 64 ms), mostly
            first-touch page faults."""
            if views:
                slot = (first_start + i) % m
                return dirs[slot], stps[slot], ro[slot]
            at = (start + i) % m * P + rows  # row index into the [slots * P, n] views
            return (
                torch.index_select(dirs.view(-1, dirs.shape[2]), 0, at, out=y_out),
                torch.index_select(stps.view(-1, stps.shape[2]), 0, at, out=s_out),
                ro.view(-1).index_select(0, at),
            )

        al: list[torch.Tensor] = [q.new_zeros(0)] * num_old
        for i in range(num_old - 1, -1, -1):
            y_i, s_i, ro_i = entry(i)
            al[i] = _rowdot(s_i, q) * ro_i
            q.addcmul_(y_i, al[i].unsqueeze(1), value=-1)
        r = q.mul_(self.H_diag[rows].unsqueeze(1))
        for i in range(num_old):
            y_i, s_i, ro_i = entry(i)
            be_i = _rowdot(y_i, r) * ro_i
            r.addcmul_(s_i, (al[i] - be_i).unsqueeze(1))
        return r

    # -- one LBFGS.step per problem -------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Closure, active: torch.Tensor | None = None) -> torch.Tensor:
        """One ``torch.optim.LBFGS.step(closure)`` for each active problem; returns orig_loss."""
        x = self.x
        P = x.shape[0]
        if active is None:
            active = torch.ones(P, dtype=torch.bool, device=x.device)
        orig_loss = torch.full((P,), float("nan"), dtype=torch.float64, device=x.device)
        rows = active.nonzero().view(-1)
        if rows.numel() == 0:
            return orig_loss

        with torch.enable_grad():
            loss32, g = closure(rows, x[rows])
        loss = loss32.detach().to(torch.float64)
        orig_loss[rows] = loss
        current_evals = 1
        self.func_evals[rows] += 1
        keep = ~(g.abs().amax(dim=1) <= self.tolerance_grad)  # optimal at the start: no step
        rows, g, loss = _select(keep, rows, g, loss)

        n_iter = 0
        while rows.numel() > 0 and n_iter < self.max_iter:
            n_iter += 1
            self.n_iter[rows] += 1
            first = self.n_iter[rows] == 1

            # direction
            d = torch.empty_like(g)
            if bool(first.any()):
                fr = rows[first]
                d[first] = g[first].neg()
                self.hist_len[fr] = 0
                self.hist_start[fr] = 0
                self.H_diag[fr] = 1.0
            later = ~first
            if bool(later.any()):
                lr_rows, g_l = _select(later, rows, g)
                y = g_l - self._take(self.prev_flat_grad, lr_rows)
                s = self._take(self.d, lr_rows) * self.t[lr_rows].unsqueeze(1)
                ys = _rowdot(y, s)
                upd = ys > 1e-10
                if bool(upd.any()):
                    ur, y_u, ys_u, s_u = _select(upd, lr_rows, y, ys, s)
                    self._push(ur, y_u, s_u, ys_u)
                    self.H_diag[ur] = ys_u / _rowdot(y_u, y_u)
                if lr_rows.numel() == rows.numel():
                    d = self._direction(lr_rows, g_l)
                else:
                    d[later] = self._direction(lr_rows, g_l)
            self._put(self.d, rows, d)
            self._put(self.prev_flat_grad, rows, g)
            self.prev_loss[rows] = loss

            # step length: min(1, 1/|g|_1) * lr on the very first iteration, else lr
            t = torch.full((rows.numel(),), self.lr, dtype=x.dtype, device=x.device)
            if bool(first.any()):
                inv = 1.0 / g[first].abs().sum(dim=1)
                t[first] = torch.where(inv < 1.0, inv, torch.ones_like(inv)) * self.lr
            self.t[rows] = t

            gtd = _rowdot(g, d)  # directional derivative below tolerance: stop before moving
            go = ~(gtd > -self.tolerance_change)
            rows, g, loss, d, t = _select(go, rows, g, loss, d, t)
            if rows.numel() == 0:
                break

            step = d * t.unsqueeze(1)
            if rows.numel() == P:  # all rows, in order: the same sums without index copies
                x.add_(step)
            else:
                x[rows] = x[rows] + step
            ls_func_evals = 0
            opt_cond = torch.zeros(rows.numel(), dtype=torch.bool, device=x.device)
            if n_iter != self.max_iter:  # torch re-evaluates except after the last iteration
                with torch.enable_grad():
                    loss32, g = closure(rows, x[rows])
                loss = loss32.detach().to(torch.float64)
                opt_cond = g.abs().amax(dim=1) <= self.tolerance_grad
                ls_func_evals = 1
            current_evals += ls_func_evals
            self.func_evals[rows] += ls_func_evals

            if n_iter == self.max_iter or current_evals >= self.max_eval:
                break
            done = (
                opt_cond
                | (step.abs().amax(dim=1) <= self.tolerance_change)
                | ((loss - self.prev_loss[rows]).abs() < self.tolerance_change)
            )
            rows, g, loss = _select(~done, rows, g, loss)
        return orig_loss

    def _take(self, buf: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``buf[rows]`` (a copy), or ``buf`` itself when ``rows`` is every row in order."""
        return buf if rows.numel() == buf.shape[0] else buf[rows]

    def _put(self, buf: torch.Tensor, rows: torch.Tensor, value: torch.Tensor) -> None:
        """``buf[rows] = value``, a plain copy when ``rows`` is every row in order."""
        if rows.numel() == buf.shape[0]:
            buf.copy_(value)
        else:
            buf[rows] = value


def _select(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``t[mask]`` for each tensor, skipping the copies when the mask keeps every row."""
    if bool(mask.all()):
        return tensors
    return tuple(t[mask] for t in tensors)
