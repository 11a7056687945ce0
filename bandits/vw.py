"""Vowpal Wabbit behind one door: the only module that imports vowpalwabbit.

Three things live here and nowhere else:
- the example text: typed features -> VW's multi-line ADF format
  (`example_text`, golden-tested), with escaping;
- reward -> cost: a placement declares its reward range (lo, hi) and a
  reward r becomes cost -(r - lo)/(hi - lo) clipped to [-1, 0]; VW sees
  nothing else (raw business values as costs wreck SquareCB and bagging);
- the VW arguments for each exploration (`VWConfig.args`).

A workspace is not thread-safe: one VWPolicy per event loop / process, and
a new model is swapped in by replacing the object between requests.

Hot path: the example text is parsed by VW's native parser into example
objects (`Workspace._parse`, `predict_multi`/`learn_multi`,
`_finish_example_multi_ex`), bypassing pyvw's per-line Python wrapper, which
measured 3.5x slower (docs/BANDITS.md). The pre-parsed objects also give
each action's predicted cost (its partial prediction) for free.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import vowpalwabbit

from bandits.policy import (
    Action,
    Context,
    Features,
    PolicyLoadError,
    Ranking,
    check_actions,
    check_example,
    pack,
    ranking,
    unpack,
)

KIND = "vw"

# Namespace -> VW namespace letter. VW interacts namespaces by their first
# character, and "context"/"content"/"channel" all start with "c", hence a
# fixed letter per namespace. A namespace not listed here is written under
# its own (escaped) name, so it reaches the model as linear features and can
# be named in `interactions` by its first character.
NAMESPACES: Mapping[str, str] = MappingProxyType(
    {"user": "U", "context": "X", "offer": "O", "content": "C", "channel": "H"})
SHARED_NAMESPACES = ("user", "context")
ACTION_NAMESPACES = ("offer", "content", "channel")
# Shared x action: without these an ADF model cannot personalise at all
# ("it isn't learning; probabilities stay uniform").
DEFAULT_INTERACTIONS = tuple(NAMESPACES[s] + NAMESPACES[a] for s in SHARED_NAMESPACES for a in ACTION_NAMESPACES)

# The native-parse hot path (module docstring) uses these workspace methods;
# fail at import, not on the first request, if a VW release drops one.
_NATIVE = ("_parse", "predict_multi", "learn_multi", "_finish_example_multi_ex")
_missing = [m for m in _NATIVE if not hasattr(vowpalwabbit.Workspace, m)]
if _missing:
    raise ImportError(f"vowpalwabbit {vowpalwabbit.__version__} lacks Workspace.{', '.join(_missing)}; "
                      "bandits.vw needs the 9.x Python bindings")

EXPLORATIONS = ("epsilon", "softmax", "bagging", "squarecb")
CB_TYPES = ("ips", "dr", "mtr")


# ---- example text ---------------------------------------------------------------

_ESCAPES = {"%": "%25", " ": "%20", "\t": "%09", "\n": "%0A", "\r": "%0D", "\x0b": "%0B", "\x0c": "%0C",
            "|": "%7C", ":": "%3A"}
# Lossless percent-escaping: VW splits on whitespace, "|" starts a namespace
# and ":" a value. Names also escape "=" so that name=value stays unambiguous.
_ESC_VALUE = str.maketrans(_ESCAPES)
_ESC_NAME = str.maketrans({**_ESCAPES, "=": "%3D"})


def escape(text: str, *, name: bool = False) -> str:
    return text.translate(_ESC_NAME if name else _ESC_VALUE)


# VW parses numbers as float32: values beyond these bounds read as 0, inf or
# garbage and turn the PMF into NaN. Features outside them carry no usable
# signal anyway, so they are flushed to 0 or clipped.
_TINY = 1e-30
_HUGE = 1e15


def _num(f: float) -> str:
    """Canonical number text: a function of the value alone (1, 1.0 and True
    all write "1"), so equal feature mappings always give equal text."""
    if -_TINY < f < _TINY:
        return "0"
    if not -_HUGE <= f <= _HUGE:
        f = _HUGE if f > 0 else -_HUGE
    if f.is_integer():
        return str(int(f))
    return repr(f)


def _token(ns: str, name: str, v: Any) -> str:
    """One feature's text, with its leading space ("" when dropped)."""
    t = type(v)
    if t is str:
        return " " + name.translate(_ESC_NAME) + "=" + v.translate(_ESC_VALUE)
    if t is float:
        # finite; NaN/inf would poison the weights: dropped
        return " " + name.translate(_ESC_NAME) + ":" + _num(v) if v - v == 0.0 else ""
    if t is bool or isinstance(v, np.bool_):
        return " " + name.translate(_ESC_NAME) + (":1" if v else ":0")
    if isinstance(v, (int, float, np.integer, np.floating)):
        f = float(v)
        return " " + name.translate(_ESC_NAME) + ":" + _num(f) if math.isfinite(f) else ""
    raise TypeError(f"feature {ns}.{name}: unsupported value type {t.__name__}")


def _prefix(ns: str) -> str:
    return "|" + (NAMESPACES.get(ns) or ns.translate(_ESC_NAME))


_prefixes = {ns: _prefix(ns) for ns in NAMESPACES}


def _namespace(ns: str, feats: Mapping[str, Any]) -> str:
    return _prefix(ns) + "".join([_token(ns, name, v) for name, v in feats.items()])


# Text caches. The same namespaces recur across requests and logged records
# (an offer's features, a segment), and building text is most of the cost of
# an example (docs/BANDITS.md), so:
# - each namespace's text is cached by its content (keys compare equal only
#   when the text is equal, thanks to `_num`);
# - each action line is cached by identity of its features mapping, which
#   the service builds once per candidate and catalog version: feature
#   mappings are values, mutating one after passing it here is unsupported;
# - shared namespaces are mostly unique per request as a whole, but their
#   features recur (segment=s6, country=c12, seg_vip:1): each feature's text
#   is cached by its (name, value) item (equal items give equal text, for
#   the same reason), 4x faster than escaping and formatting it again;
# - the block of all action lines of an action set is cached by the
#   identities of its Actions in order: the service's per-candidate Actions
#   (decision/stages/policy.py) and a learner's interned ones
#   (decision/feature_tables.py) get a whole block with one lookup instead
#   of one per action. Fresh Actions each time would only churn it.
# All are bounded by clearing when full.
_NS_LIMIT = 50_000
_LINES_LIMIT = 4_096  # each entry keeps its mapping alive (and costs GC time)
_TOKENS_LIMIT = 100_000
_BLOCKS_LIMIT = 1_024
_namespaces: dict[tuple[Any, ...], str] = {}
_lines: dict[int, tuple[Features, str]] = {}
_tokens: dict[tuple[str, Any], str] = {}
_blocks: dict[tuple[int, ...], tuple[tuple[Action, ...], str, tuple[int, ...]]] = {}


def _namespace_cached(ns: str, feats: Mapping[str, Any]) -> str:
    try:
        key = (ns, *feats.items())
        text = _namespaces.get(key)
    except TypeError:  # unhashable value: _namespace names it
        return _namespace(ns, feats)
    if text is None:
        text = _namespace(ns, feats)
        if len(_namespaces) >= _NS_LIMIT:
            _namespaces.clear()
        _namespaces[key] = text
    return text


def _namespace_tokens(ns: str, feats: Mapping[str, Any]) -> str:
    try:
        parts = [_tokens.get(item) for item in feats.items()]
    except TypeError:  # unhashable value: _token names it
        return _namespace(ns, feats)
    if None in parts:  # first sight of these features
        for i, item in enumerate(feats.items()):
            if parts[i] is None:
                parts[i] = text = _token(ns, *item)
                if len(_tokens) >= _TOKENS_LIMIT:
                    _tokens.clear()
                _tokens[item] = text
    prefix = _prefixes.get(ns) or _prefix(ns)
    return prefix + "".join(parts)


def features_text(features: Features) -> str:
    """The namespaces of one VW line (without label or "shared"); "|" when empty."""
    return " ".join([_namespace_tokens(ns, f) for ns, f in features.items() if f]) or "|"


# features_text for the learner's shared lines (VWPolicy.learn_interned):
# the same tokens from a cache keyed by feature name, then value, which needs
# no (name, value) tuple built and hashed per feature, and a float seen for
# the first time (an amount: one on almost every line) is formatted without
# escaping its name again. Measured with callgrind on the bench's lines of
# 12 features: 50k -> 33k instructions a line, 28k -> 20k when every token
# is cached. The learner makes ~20,000 lines a second, the service ~20 a
# request: a second cache for the learner only.
_values_by_name: dict[str, dict[Any, str]] = {}
_values_count = 0
_escaped_names: dict[str, str] = {}


def shared_text(features: Features) -> str:
    """features_text(features), through the name -> value -> token cache
    (equal text, property-tested against features_text)."""
    parts: list[str] = []
    for ns, feats in features.items():
        if not feats:
            continue
        start = len(parts)
        prefix = _prefixes.get(ns) or _prefix(ns)
        parts.append(" " + prefix if parts else prefix)
        try:
            for name, v in feats.items():
                known = _values_by_name.get(name)
                text = known.get(v) if known is not None else None
                parts.append(_value_token(ns, name, v) if text is None else text)
        except TypeError:  # an unhashable or unsupported value: features_text's path names it
            del parts[start:]
            text = _namespace_tokens(ns, feats)
            parts.append(" " + text if parts else text)
    return "".join(parts) or "|"


def _value_token(ns: str, name: str, v: Any) -> str:
    global _values_count
    if type(v) is float and v - v == 0.0:  # _token's float branch, with the escaped name cached: unique
        escaped = _escaped_names.get(name)  # floats (amounts, times) miss on every line
        if escaped is None:
            if len(_escaped_names) >= _NS_LIMIT:
                _escaped_names.clear()
            escaped = _escaped_names[name] = " " + name.translate(_ESC_NAME) + ":"
        text = escaped + _num(v)
    else:
        text = _token(ns, name, v)
    if _values_count >= _TOKENS_LIMIT:
        _values_by_name.clear()
        _values_count = 0
    known = _values_by_name.get(name)
    if known is None:
        known = _values_by_name[name] = {}
    known[v] = text
    _values_count += 1
    return text


def action_text(features: Features) -> str:
    """features_text of an action, through both caches. (Shared features are
    mostly unique per request: caching them would only evict actions.)"""
    hit = _lines.get(id(features))
    if hit is not None and hit[0] is features:
        return hit[1]
    text = " ".join([_namespace_cached(ns, f) for ns, f in features.items() if f]) or "|"
    if len(_lines) >= _LINES_LIMIT:
        _lines.clear()
    _lines[id(features)] = (features, text)
    return text


def example_text(shared: Features, actions: Sequence[Features],
                 label: tuple[int, float, float] | None = None) -> str:
    """The VW cb_adf multi-line example: a "shared" line, then one line per
    action in order. `label` = (chosen index, cost, probability) puts
    "0:cost:probability" on the chosen action's line."""
    lines = ["shared " + features_text(shared)]
    lines.extend([action_text(a) for a in actions])
    if label is not None:
        chosen, cost, probability = label
        lines[chosen + 1] = "0:" + _num(float(cost)) + ":" + _num(float(probability)) + " " + lines[chosen + 1]
    return "\n".join(lines)


def _action_block(actions: Sequence[Action]) -> tuple[str, tuple[int, ...]]:
    """The action lines of `actions` joined by newlines, and where each starts.

    Cached by the identity of each action, in order: the service hands the
    same Action objects for a catalog's candidates on every request
    (decision/stages/policy.py), so the block of a recurring set is built
    once. The entry keeps its actions alive, so their ids stay theirs."""
    key = tuple(map(id, actions))
    hit = _blocks.get(key)
    if hit is not None:
        return hit[1], hit[2]
    lines = [action_text(a.features) for a in actions]
    starts = []
    at = 0
    for line in lines:
        starts.append(at)
        at += len(line) + 1
    block, offsets = "\n".join(lines), tuple(starts)
    if len(_blocks) >= _BLOCKS_LIMIT:
        _blocks.clear()
    _blocks[key] = (tuple(actions), block, offsets)
    return block, offsets


def actions_example_text(shared: Features, actions: Sequence[Action],
                         label: tuple[int, float, float] | None = None) -> str:
    """example_text(shared, [a.features for a in actions], label), through
    the action-block cache (the policies' hot path; equal text, tested)."""
    block, starts = _action_block(actions)
    if label is None:
        return "".join(("shared ", features_text(shared), "\n", block))
    chosen, cost, probability = label
    at = starts[chosen]
    return "".join(("shared ", features_text(shared), "\n", block[:at], "0:", _num(float(cost)), ":",
                    _num(float(probability)), " ", block[at:]))


def _labelled_line(action: Action, cost: float, probability: float) -> str:
    """The chosen action's line with its cb label (action 0: VW reads the
    chosen one from its place in the sequence)."""
    return "".join(("0:", _num(float(cost)), ":", _num(float(probability)), " ", action_text(action.features)))


def _num_arg(x: float) -> str:
    return _num(float(x))


def reward_to_cost(reward: float, reward_range: tuple[float, float]) -> float:
    """Reward in the placement's declared range -> VW cost in [-1, 0]:
    lo -> 0 (no gain), hi -> -1 (best), clipped outside the range."""
    lo, hi = reward_range
    cost = -(float(reward) - lo) / (hi - lo)
    return 0.0 if cost > 0.0 else -1.0 if cost < -1.0 else cost + 0.0  # + 0.0: no "-0.0"


def check_reward_range(reward_range: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in reward_range)
    except (TypeError, ValueError):
        raise ValueError(f"reward_range must be (lo, hi), got {reward_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"reward_range must be finite with lo < hi, got {reward_range!r}")
    return lo, hi


# ---- configuration ----------------------------------------------------------------

# catalog params key -> VWConfig field
PARAM_KEYS: Mapping[str, str] = MappingProxyType({
    "exploration": "exploration", "epsilon": "epsilon", "lambda": "softmax_lambda", "bags": "bags", "gamma": "gamma",
    "gamma_exponent": "gamma_exponent", "cb_type": "cb_type", "learning_rate": "learning_rate", "power_t": "power_t",
    "l2": "l2", "interactions": "interactions", "bits": "bits"})
# the keys only some explorations use (the others are shared by all)
EXPLORATION_PARAMS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "epsilon": ("epsilon",), "softmax": ("lambda",), "bagging": ("bags", "epsilon"),
    "squarecb": ("gamma", "gamma_exponent")})


@dataclass(frozen=True, slots=True)
class VWConfig:
    """The validated params of a "vw" policy (catalog `params`)."""

    # SquareCB: the exploration that learned on-policy on most seeds in
    # bandits/bench_explore.py (docs/BANDITS.md); VW 9.x needs cb_type mtr.
    exploration: str = "squarecb"
    epsilon: float = 0.05  # epsilon; also the exploration floor under bagging
    softmax_lambda: float = 10.0  # costs span [-1, 0]: lambda 10 = e^1 odds per 0.1 of cost
    bags: int = 5
    gamma: float = 10.0  # squarecb --gamma_scale
    gamma_exponent: float = 0.5
    cb_type: str = "mtr"
    learning_rate: float = 0.5
    power_t: float = 0.5
    l2: float = 0.0
    interactions: tuple[str, ...] = DEFAULT_INTERACTIONS
    bits: int = 18

    @classmethod
    def errors(cls, params: Mapping[str, Any], prefix: str = "params") -> list[str]:
        """Every problem in `params`, each naming its key."""
        errs: list[str] = []
        if not isinstance(params, Mapping):
            return [f"{prefix}: must be a mapping, got {type(params).__name__}"]
        for k in params:
            if k not in PARAM_KEYS:
                errs.append(f"{prefix}.{k}: unknown option (known: {', '.join(PARAM_KEYS)})")
        exploration = params.get("exploration", "squarecb")
        if exploration not in EXPLORATIONS:
            errs.append(f"{prefix}.exploration: unknown exploration {exploration!r} (known: {', '.join(EXPLORATIONS)})")
            exploration = None
        else:
            owned = {k for ks in EXPLORATION_PARAMS.values() for k in ks}
            for k in params:
                if k in owned and k not in EXPLORATION_PARAMS[exploration]:
                    errs.append(f"{prefix}.{k}: not used by exploration {exploration!r}")

        def number(key: str, lo: float, hi: float, *, lo_open: bool = False, integer: bool = False) -> None:
            if key not in params:
                return
            v = params[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
                errs.append(f"{prefix}.{key}: must be {'an integer' if integer else 'a number'}, got {v!r}")
            elif not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
                lb = "(" if lo_open else "["
                errs.append(f"{prefix}.{key}: must be in {lb}{lo:g}, {hi:g}], got {v!r}")

        number("epsilon", 0.0, 1.0)
        number("lambda", 0.0, 1e6, lo_open=True)
        number("bags", 2, 1000, integer=True)
        number("gamma", 0.0, 1e9, lo_open=True)
        number("gamma_exponent", 0.0, 1.0)
        number("learning_rate", 0.0, 1e3, lo_open=True)
        number("power_t", 0.0, 1.0)
        number("l2", 0.0, 1.0)
        number("bits", 1, 30, integer=True)
        cb_type = params.get("cb_type", "mtr")
        if cb_type not in CB_TYPES:
            errs.append(f"{prefix}.cb_type: unknown cb_type {cb_type!r} (known: {', '.join(CB_TYPES)})")
        elif exploration == "squarecb" and cb_type != "mtr":
            errs.append(f"{prefix}.cb_type: squarecb requires cb_type 'mtr' in VW 9.x, got {cb_type!r}")
        if "interactions" in params:
            inter = params["interactions"]
            if isinstance(inter, str) or not isinstance(inter, Sequence):
                errs.append(f"{prefix}.interactions: must be a list of namespace-letter strings such as 'UO', "
                            f"got {inter!r}")
            else:
                for i, q in enumerate(inter):
                    if not isinstance(q, str) or len(q) < 2 or any(ch.isspace() or ch in "|:" for ch in q):
                        errs.append(f"{prefix}.interactions[{i}]: must be 2+ namespace letters such as 'UO', got {q!r}")
        return errs

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> VWConfig:
        params = dict(params or {})
        errs = cls.errors(params)
        if errs:
            raise ValueError("; ".join(errs))
        kw = {PARAM_KEYS[k]: v for k, v in params.items()}
        if "interactions" in kw:
            kw["interactions"] = tuple(kw["interactions"])
        for k in ("bags", "bits"):
            if k in kw:
                kw[k] = int(kw[k])
        return cls(**kw)

    def args(self, seed: int) -> list[str]:
        a = ["--cb_explore_adf", "--cb_type", self.cb_type]
        if self.exploration == "epsilon":
            a += ["--epsilon", _num_arg(self.epsilon)]
        elif self.exploration == "softmax":
            a += ["--softmax", "--lambda", _num_arg(self.softmax_lambda)]
        elif self.exploration == "bagging":
            a += ["--bag", str(self.bags), "--epsilon", _num_arg(self.epsilon)]
        elif self.exploration == "squarecb":
            a += ["--squarecb", "--gamma_scale", _num_arg(self.gamma),
                  "--gamma_exponent", _num_arg(self.gamma_exponent)]
        for q in self.interactions:
            a += ["--interactions", q]
        a += ["-l", _num_arg(self.learning_rate), "--power_t", _num_arg(self.power_t), "--l2", _num_arg(self.l2),
              "-b", str(self.bits), "--random_seed", str(int(seed)), "--quiet"]
        return a


# ---- the policy ---------------------------------------------------------------------

_CB_LABEL = vowpalwabbit.LabelType.CONTEXTUAL_BANDIT
# learn_interned's caches, per workspace: parsed action examples (~32 KiB of
# VW memory each, so 1,024 actions are ~32 MiB) and action sets (lists of them)
_PARSED_LIMIT = 1_024
_PARSED_SETS_LIMIT = 1_024


# Added to every workspace, never to the args a model is saved with: cb_adf's
# learn then skips predicting every action before it updates the chosen one.
# Nothing reads that prediction (a learner's progressive loss does not use
# it, and rank() predicts on its own), and the model, the loss and later
# predictions are the same, byte for byte, for every exploration and cb_type
# (tested). For the default SquareCB it takes about a third off each learn.
# VW does not write it into the model file.
_WORKSPACE_ONLY = ("--no_predict",)


# Under cb_type mtr, VW's learn updates the chosen action's example alone:
# cb_adf's MTR trains on that one example, weighted by 1/p times the share
# of events among actions seen (so the number of actions still counts). The
# other actions' features are read by one thing only: cb_explore_adf
# predicts the whole set before it learns, and that prediction is the
# progressive loss and nothing else. So an example whose loss is not
# measured learns with every other action blank (an example without
# features, in its place): the same weights and later predictions, bit for
# bit, for each of the four explorations (tested; VW's model file differs
# only in its own run statistics, its loss sum and feature count, which
# nothing reads), and under SquareCB with 20 actions about a third less time
# per learn. The progressive loss is measured on one example in LOSS_EVERY
# a policy learns, with all its actions. Other cb_types (dr, ips, dm) learn
# from every action: always all of them.
LOSS_EVERY = 4
_BLANK_LINE = "|"
# the explorations tested with blanks, named here rather than taken from
# EXPLORATIONS: one added there learns with every action until it is tested
_BLANK_EXPLORATIONS = frozenset({"epsilon", "softmax", "bagging", "squarecb"})
_PHI64 = 0x9E3779B97F4A7C15  # 2**64 / the golden ratio
_MASK64 = 2**64 - 1


def loss_measured(n: int) -> bool:
    """Whether a policy measures the progressive loss on the n-th example it
    learns (from 0): one in LOSS_EVERY, spread by the golden ratio's Weyl
    sequence (n * phi mod 1 < 1 / LOSS_EVERY) rather than every k-th, so
    that no period in the stream (a slate's k items learned in a row, rank
    1 first) puts the same kind of example in every sample. Deterministic:
    a restarted learner measures the same examples."""
    return (n * _PHI64) & _MASK64 < 2**64 // LOSS_EVERY


def _workspace(args: Sequence[str]) -> vowpalwabbit.Workspace:
    return vowpalwabbit.Workspace(arg_list=[*args, *_WORKSPACE_ONLY])


def _without_seed(args: Sequence[str]) -> list[str]:
    """Args for loading a saved model: the model file carries its random
    seed (bagging stores its RNG's current state there), so ours would
    contradict it. Learning rate, power_t and l2 are not stored: they must be
    passed again, hence the args in the header."""
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a == "--random_seed":
            skip = True
        else:
            out.append(a)
    return out


class VWPolicy:
    """A `cb_explore_adf` policy. `rank` returns VW's PMF (float64,
    renormalised); scores are the negated predicted costs, except under
    bagging where they are the PMF (the per-action prediction is only the
    last bag's)."""

    kind = KIND
    learns = True

    def __init__(self, name: str = KIND, params: Mapping[str, Any] | None = None, *,
                 reward_range: Sequence[float] = (0.0, 1.0), seed: int = 0,
                 _model: bytes | None = None, _args: Sequence[str] | None = None,
                 _state: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.params: Mapping[str, Any] = dict(params or {})
        self.config = VWConfig.from_params(self.params)
        self.reward_range = check_reward_range(reward_range)
        self.seed = int(seed)
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {seed!r}")
        self.args: list[str] = list(_args) if _args is not None else self.config.args(self.seed)
        state = dict(_state or {})
        self.examples_learned: int = int(state.get("examples_learned", 0))
        # the progressive loss: its sum and the examples it was measured on
        # (a model saved before LOSS_EVERY measured every example)
        self._loss_sum = float(state.get("sum_loss", 0.0))
        self.loss_examples: int = int(state.get("loss_examples", self.examples_learned))
        self._blank_ok = self.config.cb_type == "mtr" and self.config.exploration in _BLANK_EXPLORATIONS
        self._blanks: list[vowpalwabbit.Example] = []  # blank action examples, this workspace's
        self._lineage: str = state.get("lineage") or hashlib.sha256(" ".join(self.args).encode()).hexdigest()[:12]
        self._since_save = int(state.get("since_save", 0))
        self._scores_are_costs = self.config.exploration != "bagging"
        # learn_interned's parsed action examples, which belong to this workspace
        self._parsed: dict[int, tuple[Action, vowpalwabbit.Example]] = {}
        self._parsed_sets: dict[tuple[int, ...], tuple[tuple[Action, ...], list[vowpalwabbit.Example] | None]] = {}
        if _model is None:
            self._ws = _workspace(self.args)
        else:
            with tempfile.TemporaryDirectory(prefix="nba-vw-") as d:
                path = os.path.join(d, "model.vw")
                with open(path, "wb") as f:
                    f.write(_model)
                try:
                    self._ws = _workspace([*_without_seed(self.args), "--initial_regressor", path])
                except (RuntimeError, ValueError) as e:  # VW: RuntimeError("Bad model format.") ...
                    raise PolicyLoadError(f"VW refused the saved model: {e}") from None

    # -- protocol --

    @property
    def version(self) -> str:
        """"vw:<12 hex>" = hash of the last saved/loaded model bytes (or of the
        args for a fresh model), "+<n>" when n examples were learned since."""
        return f"vw:{self._lineage}" + (f"+{self._since_save}" if self._since_save else "")

    def rank(self, context: Context, actions: Sequence[Action]) -> Ranking:
        """Each action's example is parsed once per workspace and reused (the
        service hands the same Action objects on every request, see
        learn_interned for why reusing them is exact): a request parses its
        shared line only. Same probabilities and scores as parsing the whole
        text (tested)."""
        n = check_actions(actions)
        ws = self._ws
        parsed = self._parsed_actions(actions)
        if parsed is None:  # an action twice in the set
            exs = ws._parse(actions_example_text(context.features, actions))
        else:
            exs = [*ws._parse("shared " + shared_text(context.features)), *parsed]
        try:
            ws.predict_multi(exs)
            pmf = exs[0].get_action_scores()
            if self._scores_are_costs:
                scores = [0.0 - e.get_partial_prediction() for e in exs[1:]]
            else:
                scores = pmf
        finally:
            ws._finish_example_multi_ex(exs)
        if len(pmf) != n:
            raise RuntimeError(f"VW returned {len(pmf)} probabilities for {n} actions")
        return ranking(np.asarray(pmf, dtype=np.float64), np.asarray(scores, dtype=np.float64))

    def learn(self, context: Context, actions: Sequence[Action], chosen: int, probability: float,
              reward: float) -> None:
        n = check_actions(actions)
        check_example(actions, chosen, probability)
        if self._measures_loss():
            self.learn_text(self.example(context, actions, chosen, probability, reward))
        else:
            self._learn_with(self._blank_actions(n), context, actions, chosen, probability, reward, False)

    def save(self) -> bytes:
        """The envelope: header (kind, name, params, reward range, seed, VW
        args and version, counters) + VW's own model file (with the state to
        resume learning). Saving makes its hash the model version."""
        with tempfile.TemporaryDirectory(prefix="nba-vw-") as d:
            path = os.path.join(d, "model.vw")
            self._ws.save(path)
            with open(path, "rb") as f:
                model = f.read()
        self._lineage = hashlib.sha256(model).hexdigest()[:12]
        self._since_save = 0
        return pack({
            "kind": KIND,
            "name": self.name,
            "params": dict(self.params),
            "reward_range": list(self.reward_range),
            "seed": self.seed,
            "vw_args": self.args,
            "vw_version": vowpalwabbit.__version__,
            "state": {
                "examples_learned": self.examples_learned,
                "sum_loss": self.sum_loss,
                "loss_examples": self.loss_examples,
                "lineage": self._lineage,
            },
        }, model)

    @classmethod
    def load(cls, data: bytes) -> VWPolicy:
        header, model = unpack(data, KIND)
        try:
            name = str(header["name"])
            params = header["params"]
            reward_range = header["reward_range"]
            seed = int(header["seed"])
            args = [str(a) for a in header["vw_args"]]
            state = header.get("state") or {}
        except (KeyError, TypeError, ValueError) as e:
            raise PolicyLoadError(f"saved vw policy header incomplete: {e}") from None
        if not model:
            raise PolicyLoadError("saved vw policy has no model payload")
        try:
            return cls(name, params, reward_range=reward_range, seed=seed, _model=model, _args=args, _state=state)
        except ValueError as e:
            if isinstance(e, PolicyLoadError):
                raise
            raise PolicyLoadError(f"saved vw policy is not loadable here: {e}") from None

    # -- learner helpers --

    def cost(self, reward: float) -> float:
        return reward_to_cost(reward, self.reward_range)

    def example(self, context: Context, actions: Sequence[Action], chosen: int, probability: float,
                reward: float) -> str:
        """The labelled VW text of one logged example (also what a dsjson/text
        export of the same example would train)."""
        return actions_example_text(context.features, actions, (chosen, self.cost(reward), probability))

    def learn_text(self, text: str) -> None:
        """Learn one labelled example's VW text, all its actions (the
        progressive loss measured on it)."""
        self._learn_examples(self._ws._parse(text))

    def _measures_loss(self) -> bool:
        """Whether the next example learns with all its actions, the
        progressive loss measured on it (see LOSS_EVERY)."""
        return not self._blank_ok or loss_measured(self.examples_learned)

    def _learn_examples(self, exs: list, measured: bool = True) -> None:
        """Learn one multi-line example (shared first) and finish it; count
        its progressive loss when all its actions were there."""
        ws = self._ws
        before = ws.get_sum_loss() if measured else 0.0
        try:
            ws.learn_multi(exs)
        finally:
            ws._finish_example_multi_ex(exs)
        if measured:
            self._loss_sum += ws.get_sum_loss() - before
            self.loss_examples += 1
        self.examples_learned += 1
        self._since_save += 1

    def learn_interned(self, context: Context, actions: Sequence[Action], chosen: int, probability: float,
                       reward: float) -> None:
        """learn(), for actions that recur as the same objects (the learner's
        interned Actions, decision/feature_tables.py): each action's unlabelled
        example is parsed once per workspace and reused, so an example parses
        only its shared line and its chosen action's labelled line (measured:
        VW's share of an example with 20 actions from ~36 us to ~26 us).
        The model is the same, byte for byte, as learn()'s (tested).

        Why this is exact: VW's learners restore every example of a sequence
        as they found it (the shared features merged into each action are
        truncated again, labels and weights put back), and VW's finish step,
        which keeps the progressive loss, returns to its pool only the
        examples it allocated, leaving ours alone (VW >= 9.10). The two that
        carry per-example state, the shared line and the labelled chosen
        action, are parsed fresh into VW's pool as in learn()."""
        if not (0 <= chosen < len(actions) and 0.0 < probability <= 1.0):
            check_actions(actions)
            check_example(actions, chosen, probability)  # both raise
        if not self._measures_loss():
            self._learn_with(self._blank_actions(len(actions)), context, actions, chosen, probability, reward, False)
            return
        parsed = self._parsed_actions(actions)
        if parsed is None:  # an action twice in the set: one example cannot stand twice in a sequence
            self.learn_text(self.example(context, actions, chosen, probability, reward))
            return
        self._learn_with(parsed, context, actions, chosen, probability, reward, True)

    def _learn_with(self, others: list[vowpalwabbit.Example], context: Context, actions: Sequence[Action],
                    chosen: int, probability: float, reward: float, measured: bool) -> None:
        """Learn the example from its shared and labelled chosen lines,
        parsed now, and `others`' examples in the other actions' places."""
        shared, labelled = self._ws._parse("".join((
            "shared ", shared_text(context.features), "\n",
            _labelled_line(actions[chosen], reward_to_cost(reward, self.reward_range), probability))))
        exs = [shared, *others]
        exs[chosen + 1] = labelled
        self._learn_examples(exs, measured)

    def _blank_actions(self, n: int) -> list[vowpalwabbit.Example]:
        """n distinct examples without features, kept for this workspace
        (one example cannot stand twice in a sequence); the chosen one's
        place is taken by its labelled line."""
        blanks = self._blanks
        while len(blanks) < n:
            blanks.append(vowpalwabbit.Example(self._ws, _BLANK_LINE, _CB_LABEL))
        return blanks[:n]

    def _parsed_actions(self, actions: Sequence[Action]) -> list[vowpalwabbit.Example] | None:
        """The unlabelled examples of `actions` in order (None when an action
        repeats), from a cache by identity of each Action and of the set (the
        identities in order). Bounded: an example holds ~32 KiB of VW memory."""
        key = tuple(map(id, actions))
        hit = self._parsed_sets.get(key)
        if hit is not None:
            return hit[1]
        cache = self._parsed
        parsed = []
        for a in actions:
            hit = cache.get(id(a))
            if hit is None or hit[0] is not a:
                if len(cache) >= _PARSED_LIMIT:
                    cache.clear()
                    self._parsed_sets.clear()
                hit = cache[id(a)] = (a, vowpalwabbit.Example(self._ws, action_text(a.features), _CB_LABEL))
            parsed.append(hit[1])
        out = parsed if len({id(e) for e in parsed}) == len(parsed) else None
        if len(self._parsed_sets) >= _PARSED_SETS_LIMIT:
            self._parsed_sets.clear()
        self._parsed_sets[key] = (tuple(actions), out)  # keeps the actions alive: their ids stay theirs
        return out

    def learn_many(self, examples: Iterable[tuple[Context, Sequence[Action], int, float, float]]) -> int:
        """Learn (context, actions, chosen, probability, reward) examples in order; returns the count."""
        n = 0
        for context, actions, chosen, probability, reward in examples:
            self.learn(context, actions, chosen, probability, reward)
            n += 1
        return n

    # -- learning health --

    @property
    def sum_loss(self) -> float:
        """VW's progressive loss summed over the examples it was measured on
        (loss_examples: one in LOSS_EVERY under cb_type mtr, else all)."""
        return self._loss_sum

    @property
    def average_loss(self) -> float | None:
        """VW's progressive loss per example it was measured on (an IPS
        estimate of the policy's cost, in cost units: -1 best .. 0 worst);
        None before any."""
        return self._loss_sum / self.loss_examples if self.loss_examples else None

    def health(self) -> dict[str, Any]:
        return {"examples_learned": self.examples_learned, "average_loss": self.average_loss,
                "version": self.version}

    def __repr__(self) -> str:
        return f"VWPolicy(name={self.name!r}, exploration={self.config.exploration!r}, version={self.version!r})"
