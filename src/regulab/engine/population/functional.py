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

Randomness. ``vmap`` runs a random op once for all members (``randomness="different"``): one
``(K, *shape)`` draw, row k for member k. The shared module's stochastic layers (regulab's
dropout, noise, DropConnect, augmentation: those with a ``generator``) hold a marker generator
instead, and ``MemberDraws`` (``engine.population.draws``) turns each of its draws into K draws
of the member's shape, draw k from member k's own noise generator: each member draws what its
run alone draws, in the same order, so its masks and noise are that run's and it equals its
separate run to float rounding, as a member that draws nothing does. Whether the forward draws,
whether its draws split per member, and whether it runs under ``vmap`` at all is found by trying
it on two examples when the population is stacked (``Unsupported`` with the error when it does
not run, so its runs train alone). A forward whose draws do not split (``randperm``, a draw on
two tensors) falls back to one population stream: a ``torch.Generator`` seeded from the
members' generators' states (none of them advanced), members' draws then differing from each
other but not their runs' (equal in distribution only). Random ops that take no generator
(``F.dropout`` called in the user's own forward) draw from the global RNG, forked and seeded
from the population's stream each step (``torch.random.fork_rng``), so a population is still
reproducible and the caller's global state untouched; those draws too are the runs' in
distribution only.

What must be equal across members: the network's class, parameters' and buffers' names and
shapes, and every module's description (``layer_signature``: type and ``extra_repr``). Members'
modules are one module here, with one drop probability, one noise std, one augmentation: member
keys that set a layer (``model.dropout``, ``regularization.input_noise``, ...) may not differ
inside a functional population (``runs.population`` trains such runs apart).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from regulab.engine.population.draws import MemberDraws, marker_generator
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
    ``x: (K, B, ...)`` and ``write_back(k)``. ``generators[k]``: member k's noise generator, which
    its draws come from (``exact``), or whose state seeds the population's stream when they do
    not split per member.
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
        self.member_generators = list(generators)
        self.randomness, self.global_rng, self.exact = self._probe(sample)
        self.generator: torch.Generator | None = None     # the population's stream
        if self.randomness == "different" and (self.global_rng or not self.exact):
            self.generator = torch.Generator(device=self.device).manual_seed(self._stream_seed())
        set_generator(self.net, marker_generator(self.device) if self.exact else self.generator)

    def _stream_seed(self) -> int:
        """The population stream's seed: a digest of the members' generators' states, so the
        same population (or the same one continued from checkpoints) draws the same stream,
        and no member's generator is advanced by it."""
        digest = hashlib.sha256()
        for g in self.member_generators:
            digest.update(b"-" if g is None else g.get_state().numpy().tobytes())
        return int(np.random.SeedSequence(int.from_bytes(digest.digest(), "little")).generate_state(1)[0])

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

    def _probe(self, sample: Tensor) -> tuple[str, bool, bool]:
        """(vmap's randomness, whether the forward draws from the global RNG, whether its draws
        split per member), found by running it on ``sample`` in evaluation and in training
        (with a backward pass) on copies; ``Unsupported`` with the error when it cannot run
        under ``vmap``."""
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
        return randomness, global_rng, randomness == "different" and self._splits(params, buffers, x)

    def _splits(self, params: dict, buffers: dict, x: Tensor) -> bool:
        """Whether the training forward's draws split per member (``MemberDraws``): every member
        has a generator and the forward runs under the mode, on throwaway generators."""
        if any(g is None for g in self.member_generators):
            return False
        set_generator(self.net, marker_generator(self.device))
        scratch = [torch.Generator(device=self.device).manual_seed(k) for k in range(self.K)]
        try:
            with torch.random.fork_rng(devices=self._cuda()), MemberDraws(scratch):
                self._run(params, buffers, x, "different")
        except Exception:       # Unsupported, or what the user's forward raises on the rows
            return False
        return True

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
        (its dropout draws, each member from its own generator where they split, its batch
        norm uses and updates batch statistics). ``step`` is ``StackedNet``'s (predrawn
        masks) and unused: the draws happen in the forward."""
        self.net.train(training)
        draws = training and self.exact
        with self._global_rng(), MemberDraws(self.member_generators) if draws else contextlib.nullcontext():
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
