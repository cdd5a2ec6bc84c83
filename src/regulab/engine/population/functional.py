"""A user's network as a population: K copies of one ``nn.Module`` trained at once with ``torch.func``.

A user's network (``model.factory``, ``regulab.nn.user``) is any ``nn.Module``, so it has no
stacked form layer by layer as regulab's MLPs have (``engine.population.stacked``). Instead its
K members' parameters and buffers are stacked, ``theta_i: (K, *shape_i)`` (the parameters in
one flat buffer, ``FlatParams``, so the optimizer step is a few kernels over it; the buffers
with ``torch.func.stack_module_state``), and the user's own forward runs once for all members,
vectorized over the member dimension::

    out = vmap(lambda theta, beta, x: functional_call(net, (theta, beta), (x,)))(Theta, Beta, X)
    out[k] = f(X[k]; theta_k, beta_k)                      # (K, B, ...) from X: (K, B, ...)

``X[k]`` is member k's batch (its own shuffling); ``beta_k`` its buffers (batch norm's running
statistics, updated in place on its row in training, as its layer alone would). The ``Population``
(``engine.population.population``) then computes each member's own loss and takes one step:

    L_k = CE_{eps_k}(out[k], y_k)  (or MSE),   d(sum_j L_j) / d theta_k = d L_k / d theta_k,

one backward pass giving every member its own gradient, and ``StackedOptimizer`` applies
member k's rule with its learning rate and weight decay, the penalty gradient
``l1_k sign(w) + 2 l2_k w`` added first (``StackedNormPenalty``). So a member that draws no
random numbers in its forward has the numbers of its separate run up to float rounding: the
vectorized kernels sum in another order than one network's
(``tests/test_population_func.py``: atol 1e-5 on weights and losses). Training that amplifies
rounding amplifies this too, as for the stacked path (BENCHMARKS.md): a ReLU pre-activation
within rounding of 0, or Adam on a parameter whose gradient is only rounding (a conv's bias
before batch norm, which the normalization cancels), moves a member off its run by up to lr
a step; over epochs it then wanders as far as another seed would (the byo clinic's ResNet,
8 epochs: train losses within 1%, validation accuracies of an undertrained net within ~0.1).

Randomness. ``vmap`` draws one ``(K, *shape)`` tensor for a random op and hands row k to
member k (``randomness="different"``): members' dropout masks (and noise) differ from each
other, but come from one population stream, a ``torch.Generator`` seeded by one draw from each
member's noise generator, not from member k's own generator in the order its run alone would.
A member of a network that draws is therefore a separate run's equal in distribution only:
the same model, data order, initialization and hyperparameters, other masks (the test checks
its scores statistically). Random ops that take no generator (``nn.Dropout2d``'s) draw from the
global RNG, forked and seeded from the population's stream each step (``torch.random.fork_rng``),
so a run is still reproducible and the caller's global state untouched. Whether the network
draws, and whether its forward runs under ``vmap`` at all, is found by trying it on two
examples when the population is stacked (``Unsupported`` with the error, so its runs train alone).

What must be equal across members: the network's class, parameters' and buffers' names and
shapes, and every module's description (``layer_signature``: type and ``extra_repr``). Members'
modules are one module here, with one drop probability, one noise std, one augmentation: member
keys that set a layer (``model.dropout``, ``regularization.input_noise``, ...) may not differ
inside a functional population (``runs.population`` trains such runs apart).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from regulab.engine.population.flat import FlatParams
from regulab.engine.population.stacked import Unsupported
from regulab.nn.layers import set_generator

__all__ = ["FunctionalNet", "layer_signature", "layer_difference"]


def layer_signature(net: nn.Module) -> tuple:
    """What members of one functional population share: each module's name, class and description
    (``extra_repr``: a drop probability, a noise std, a layer's sizes)."""
    return tuple((name, type(m).__qualname__, m.extra_repr()) for name, m in net.named_modules())


def layer_difference(a: nn.Module, b: nn.Module) -> str | None:
    """Where ``b``'s layers differ from ``a``'s, as ``"layer 'drop': Dropout(drop_prob=0.3, ...)
    vs Dropout(drop_prob=0.1, ...)"``; None when they agree."""
    sa, sb = layer_signature(a), layer_signature(b)
    for (name, cls, desc), other in zip(sb, sa):
        if (name, cls, desc) != other:
            return f"layer '{name or type(b).__name__}': {cls}({desc}) vs {other[1]}({other[2]})"
    if len(sa) != len(sb):
        return f"{len(sb)} modules vs {len(sa)}"
    return None


def _shapes(named) -> list[tuple]:
    return [(name, tuple(t.shape), t.dtype) for name, t in named]


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}"


class FunctionalNet:
    """The members' networks ``nets`` (one class and layout) run as one with ``torch.func``.

    The interface of ``StackedNet``, which ``Population`` trains: ``K``, ``flat``/``params``
    (each ``(K, *shape)``), ``member_params``, ``active``, ``forward(x, training)`` on
    ``x: (K, B, ...)`` and ``write_back(k)``. ``generators[k]``: member k's noise generator, from
    which one seed is drawn for the population's stream when the network draws random numbers.
    ``sample``: a few training examples ``(n, ...)``, n >= 2, on which the forward is tried.
    Anything that cannot be vectorized raises ``Unsupported`` saying why (module docstring).
    """

    def __init__(self, nets: Sequence[nn.Module], generators: Sequence[torch.Generator | None],
                 sample: Tensor):
        self.K = len(nets)
        first = nets[0]
        for k, net in enumerate(nets[1:], 1):
            why = self._differs(first, net)
            if why is not None:
                raise Unsupported(f"member {k}'s network differs from member 0's: {why}")
        if len({p.dtype for p in first.parameters()}) > 1:
            raise Unsupported("the network's parameters have more than one dtype")
        self.member_params = [list(net.parameters()) for net in nets]
        self.flat = FlatParams(self.member_params)
        self.params = self.flat.params
        self.names = [name for name, _ in first.named_parameters()]
        _, buffers = stack_module_state(list(nets))
        self.buffers: dict[str, Tensor] = dict(buffers)                # name -> (K, *shape)
        self.member_buffers = [dict(net.named_buffers()) for net in nets]
        self.net = copy.deepcopy(first)     # the module whose forward runs, on the stacked tensors
        self.active = [True] * self.K
        self.device = sample.device
        self.randomness, self.global_rng = self._probe(sample)
        self.generator: torch.Generator | None = None
        if self.randomness == "different":
            seeds = [int(torch.randint(2**62, (), generator=g, device=g.device))
                     for g in generators if g is not None] or [0]
            seed = int(np.random.SeedSequence(seeds).generate_state(1)[0])
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
        set_generator(self.net, self.generator)

    @staticmethod
    def _differs(a: nn.Module, b: nn.Module) -> str | None:
        """Why ``b`` cannot share a population with ``a`` (None: it can)."""
        if type(a) is not type(b):
            return f"{type(b).__qualname__} vs {type(a).__qualname__}"
        if _shapes(a.named_parameters()) != _shapes(b.named_parameters()):
            return "its parameters' names or shapes differ"
        if _shapes(a.named_buffers()) != _shapes(b.named_buffers()):
            return "its buffers' names or shapes differ"
        return layer_difference(a, b)

    def _call(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        """One member's forward: the user's module on its parameters and buffers."""
        return functional_call(self.net, (params, buffers), (x,))

    def _run(self, params: dict, buffers: dict, x: Tensor, randomness: str) -> Tensor:
        return vmap(self._call, randomness=randomness)(params, buffers, x)

    def _probe(self, sample: Tensor) -> tuple[str, bool]:
        """(vmap's randomness, whether the forward draws from the global RNG), found by running
        it on ``sample`` in evaluation and in training (with a backward pass) on copies;
        ``Unsupported`` with the error when it cannot run under ``vmap``."""
        x = sample[:2].unsqueeze(0).expand(self.K, *sample[:2].shape)
        buffers = {n: b.clone() for n, b in self.buffers.items()}
        params = {n: p.detach().clone().requires_grad_() for n, p in zip(self.names, self.params)}
        set_generator(self.net, torch.Generator(device=self.device).manual_seed(0))   # a throwaway
        try:
            with torch.no_grad():
                self.net.eval()
                self._run(params, buffers, x, "error")
            self.net.train()
            try:
                out = self._run(params, buffers, x, "error")
                randomness, global_rng = "error", False
            except RuntimeError as e:
                if "randomness" not in str(e):
                    raise
                with torch.random.fork_rng(devices=self._cuda()):
                    before = self._global_state()
                    out = self._run(params, buffers, x, "different")
                    global_rng = any(not torch.equal(a, b) for a, b in zip(before, self._global_state()))
                randomness = "different"
            out.float().sum().backward()
        except Exception as e:      # the user's forward may raise anything under vmap
            raise Unsupported(f"its forward cannot run under torch.vmap ({_one_line(e)})") from None
        return randomness, global_rng

    def _cuda(self) -> list:
        return [self.device] if self.device.type == "cuda" else []

    def _global_state(self) -> list[Tensor]:
        """The global RNG's state (and the device's)."""
        state = [torch.random.get_rng_state()]
        if self.device.type == "cuda":
            state.append(torch.cuda.get_rng_state(self.device))
        return state

    @contextlib.contextmanager
    def _global_rng(self) -> Iterator[None]:
        """For a forward that draws from the global RNG: the RNG forked and seeded from the
        population's stream, the caller's state back after."""
        if not self.global_rng:
            yield
            return
        seed = int(torch.randint(2**62, (), generator=self.generator, device=self.device))
        with torch.random.fork_rng(devices=self._cuda()):
            torch.manual_seed(seed)
            yield

    def forward(self, x: Tensor, training: bool, step: int | None = None) -> Tensor:
        """``x: (K, B, *sample)``, member k's examples in ``x[k]`` -> ``(K, B, out)``, each
        member on its own parameters and buffers; ``training``: the module in training mode
        (its dropout draws, its batch norm uses and updates batch statistics). ``step`` is
        ``StackedNet``'s (predrawn masks) and unused: vmap draws in the forward."""
        self.net.train(training)
        with self._global_rng():
            return self._run(dict(zip(self.names, self.params)), self.buffers, x,
                             self.randomness if training else "error")

    def predraw(self, batch: int, steps: int) -> None:
        """Nothing to draw ahead (``StackedNet``'s interface): vmap draws in the forward."""

    def drop_predrawn(self) -> None:
        """Nothing drawn ahead (``StackedNet``'s interface)."""

    @torch.no_grad()
    def write_back(self, k: int) -> None:
        """Copy member k's slices of the parameters and buffers into its own network."""
        for stacked, own in zip(self.params, self.member_params[k]):
            own.copy_(stacked[k])
        for name, own in self.member_buffers[k].items():
            own.copy_(self.buffers[name][k])
