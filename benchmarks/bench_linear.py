"""asv suite for linear_cross_entropy: the chunked fused numloss call vs the materialising NumPy path.

``numpy`` is ``logits = hidden @ weight.T``, ``softmax_cross_entropy_with_grad``
in place, then ``g @ weight`` and ``g.T @ hidden`` (the same case definitions as
``numloss bench``, :mod:`numloss._bench`).  ``peakmem_*`` is the process's peak
RSS: the inputs and outputs are the same for both methods, so the difference is
the ``(N, V)`` logits the materialising path holds and numloss does not.  The
warm-up in ``setup`` runs on tiny inputs so it does not set the peak.
"""

import numba

from numloss import _bench


class LinearCrossEntropy:
    params = (["1024x256x8000", "8192x2048x32000"], ["numloss", "numpy"])
    param_names = ("NxDxV", "method")
    timeout = 900
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self, shape, method):
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        threads = numba.get_num_threads()
        # compile (256 x 256 logits reach the parallel kernels too) and start BLAS, on inputs too small to set
        # the peak memory
        tiny = _bench.LinearCase((256, 8, 256))
        _bench.linear_calls(tiny, _bench.make_linear_inputs(tiny), threads)[method]()
        case = _bench.LinearCase(tuple(int(d) for d in shape.split("x")))
        self.call = _bench.linear_calls(case, _bench.make_linear_inputs(case), threads)[method]

    def time_forward_backward(self, shape, method):
        self.call()

    def peakmem_forward_backward(self, shape, method):
        self.call()


class LinearCrossEntropyChunkSize:
    """numloss's time against ``chunk_size`` at one modest shape (default: 512 rows; 2048 = one chunk)."""

    params = ([64, 256, 512, 1024, 2048],)
    param_names = ("chunk_size",)
    number = 1
    repeat = (2, 5, 30.0)

    def setup(self, chunk_size):
        import numloss

        case = _bench.LinearCase((2048, 512, 32000))
        hidden, weight, target, _ = _bench.make_linear_inputs(case)
        numloss.linear_cross_entropy_with_grad(hidden[:256], weight[:256], target[:256] % 256)
        self.call = lambda: numloss.linear_cross_entropy_with_grad(hidden, weight, target, chunk_size=chunk_size)

    def time_forward_backward(self, chunk_size):
        self.call()


class LinearCrossEntropyOptions:
    """numloss's time per option group at 2048x512x32000 float32 (compare with "plain").

    ``sample_weight`` / ``where``: one weight per row, a tenth of the rows 0 /
    masked (those are skipped: gathered out of the chunks); ``prob_target``:
    a teacher's (N, V) probabilities read chunk by chunk; ``aux``: the
    per-row log-sum-exp returned.
    """

    params = (["plain", "sample_weight", "where", "prob_target", "aux"],)
    param_names = ("group",)
    number = 1
    repeat = (2, 5, 30.0)

    def setup(self, group):
        import numpy as np

        import numloss

        case = _bench.LinearCase((2048, 512, 32000))
        hidden, weight, target, _ = _bench.make_linear_inputs(case)
        rng = np.random.default_rng(1)
        kwargs = {}
        if group == "sample_weight":
            kwargs["sample_weight"] = np.where(rng.random(2048) < 0.1, 0.0, rng.uniform(0.5, 2.0, 2048))
        elif group == "where":
            kwargs["where"] = rng.random(2048) >= 0.1
        elif group == "prob_target":
            target = rng.dirichlet(np.ones(32000), size=2048).astype(np.float32)
        elif group == "aux":
            kwargs["aux"] = True
        small = target[:256, :256] if target.ndim == 2 else target[:256] % 256
        numloss.linear_cross_entropy_with_grad(hidden[:256], weight[:256], small)  # compile outside the timing
        self.call = lambda: numloss.linear_cross_entropy_with_grad(hidden, weight, target, **kwargs)

    def time_forward_backward(self, group):
        self.call()
