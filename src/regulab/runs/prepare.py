"""``prepare(cfg)``: everything a run needs, built and validated, with nothing written.

Data: load, keep ``data.classes``, split (``data.seed``), subsample (``data.train_size``),
flip a fraction of the training labels (``data.label_noise``), resample it for bagging
(``data.bootstrap``), derive the auxiliary labels of ``[multitask]``, fit the preprocessor
on the training split (or take the ``[transfer]`` source's), move the splits to the device.
Model: built from ``[model]`` with the noise layers of ``[regularization]`` and the heads
of ``[multitask]``, the ``[transfer]`` source's layers copied in (and frozen), and one batch
passed through it so a shape mismatch is caught here. Training: the optimizer (a learning
rate per parameter group when fine-tuning), the loss (with label smoothing), the penalties
(L1/L2), the constraints (max-norm), and the callbacks (early stopping, EMA of the weights).

Seeds: ``data.seed`` fixes the split and the label noise; ``train.seed`` is expanded with
NumPy's ``SeedSequence`` into independent seeds for initialization, shuffling and the noise
of the dropout family, so changing one never shifts the others.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from regulab.callbacks import Callback, EarlyStopping, task_monitor
from regulab.config.core import Config, check_modality
from regulab.data.dataset import Dataset
from regulab.data.label_noise import flip_labels
from regulab.data.loader import TensorLoader, check_batch_norm_rows
from regulab.data.preprocess import Preprocessor
from regulab.data.split import SplitIndices, fold_indices, split_indices, subsample
from regulab.data.stream import Rows, StreamLoader, Streamed, default_workers, place, return_freed_batches
from regulab.data.user import user_dataset
from regulab.engine.optimizers import build_optimizer
from regulab.engine.schedules import LRSchedule
from regulab.engine.trainer import Trainer, loss_function
from regulab.errors import ConfigError, DataError, Field, RegulabInputError
from regulab.modalities.layer import build_augment
from regulab.modalities.sources import load_dataset
from regulab.modalities.text.features import featurize
from regulab.nn.models import Pipeline, build_model, regularizers
from regulab.nn.user import adapt, factory_label, make_network
from regulab.regularize.constraints import MaxNorm
from regulab.regularize.ema import EMACallback
from regulab.regularize.multitask import Tasks
from regulab.regularize.penalties import NormPenalty, selected_parameters
from regulab.regularize.transfer import (SourceRun, freeze_, load_source, param_groups, transfer_by_name,
                                         transfer_weights)
from regulab.runs import viewers
from regulab.user_code import describe, load_object

__all__ = ["Prepared", "prepare", "load_data", "split_arrays", "resolve_device", "extra_columns",
           "RegularizationMonitor", "network"]


@dataclass
class Prepared:
    """A validated run, ready to train: data on the device, model, optimizer and trainer."""
    cfg: Config
    dataset: Dataset
    device: torch.device
    task: str
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]   # "train", maybe "val" and "test"
    pipeline: Pipeline
    trainer: Trainer
    loader: TensorLoader | StreamLoader
    noise: torch.Generator          # also drives Monte-Carlo dropout inference
    text: Any = None                # the fitted TextPipeline of a text dataset
    streamed: str | None = None     # why the data streams (regulab.data.stream); None: resident
    outputs: Any = None             # the network's output width, or [(head, width), ...]

    def model_info(self) -> dict:
        """What rebuilding the trained network needs besides config.toml (``model.json``)."""
        X = self.splits["train"][0]
        return {"sample_shape": list(X.shape[1:]), "outputs": self.outputs, "task": self.task,
                "classes": self.dataset.classes if self.task == "classification" else None,
                "binary": self.trainer.binary, "modality": self.dataset.modality}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'train.device' is 'cuda' but no CUDA device is available; "
                          "use 'auto' or 'cpu'")
    return torch.device(name)


def _seeds(seed: int) -> tuple[int, int, int]:
    """Independent seeds for (init, shuffle, noise) from one ``train.seed``."""
    a, b, c = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3))
    return a, b, c


def _loss_name(cfg: Config, task: str, num_classes: int) -> str:
    loss = cfg.train.loss
    if loss == "auto":
        loss = "mse" if task == "regression" else "cross_entropy"
    elif (loss == "mse") != (task == "regression"):
        raise ConfigError(f"config key 'train.loss' is '{loss}', which does not fit the dataset's "
                          f"{task} task; use {'mse' if task == 'regression' else 'cross_entropy or bce'}")
    elif loss == "bce" and num_classes != 2:
        raise ConfigError(f"config key 'train.loss' is 'bce', which needs 2 classes; "
                          f"the dataset has {num_classes}")
    if cfg.multitask.tasks and loss != "cross_entropy":
        raise ConfigError(f"config key 'multitask.tasks' needs the cross_entropy loss; got '{loss}'")
    if cfg.eval.dropout_inference != "scale" and loss != "cross_entropy":
        raise ConfigError(f"config key 'eval.dropout_inference' {cfg.eval.dropout_inference!r} needs "
                          f"the cross_entropy loss; got '{loss}'")
    if cfg.regularization.label_smoothing > 0 and loss != "cross_entropy":
        raise ConfigError(f"config key 'regularization.label_smoothing' needs the cross_entropy "
                          f"loss; got {cfg.regularization.label_smoothing} with '{loss}'")
    return loss


def _check_task(cfg: Config, task: str, modality: str) -> None:
    # any metric the run logs, the epoch and its seconds excepted (a val_* one needs the
    # validation split, which early stopping checks once the data is split)
    logged = metric_columns(task, extra_columns(cfg), True, cfg.train.eval_train)[1:-1]
    if cfg.train.monitor != "auto" and cfg.train.monitor not in logged:
        raise ConfigError(f"config key 'train.monitor' must be auto or a metric this {task} run logs "
                          f"({', '.join(logged)}); got {cfg.train.monitor!r}")
    if task == "regression" and cfg.data.label_noise > 0:
        raise ConfigError(f"config key 'data.label_noise' needs a classification task; got "
                          f"{cfg.data.label_noise} for a regression dataset")
    if task == "regression" and cfg.eval.dropout_inference != "scale":
        raise ConfigError(f"config key 'eval.dropout_inference' must be 'scale' for a regression "
                          f"task; got {cfg.eval.dropout_inference!r}")
    check_modality(cfg, modality)
    if cfg.eval.noise_snr is not None and modality != "audio":
        raise ConfigError(f"config key 'eval.noise_snr' scores audio under noise; got {cfg.eval.noise_snr} "
                          f"for data.dataset '{cfg.data.dataset}' (allowed: an audio:DIR dataset)")
    if cfg.multitask.tasks and task == "regression":
        raise ConfigError(f"config key 'multitask.tasks' needs a classification task (its labels are "
                          f"derived from the classes); got {cfg.multitask.tasks!r} for a regression dataset")
    if cfg.model.dropconnect > 0 and cfg.regularization.weight_noise > 0:
        raise ConfigError("config keys 'model.dropconnect' and 'regularization.weight_noise' "
                          "cannot both be set (each wraps the same weights); got "
                          f"{cfg.model.dropconnect} and {cfg.regularization.weight_noise}")


def _targets(y: np.ndarray, task: str, loss: str, device: torch.device) -> torch.Tensor:
    y = np.require(y, requirements="W")      # a cached dataset's arrays are read-only
    if task == "regression":
        t = torch.as_tensor(y, dtype=torch.float32)
        return (t.unsqueeze(1) if t.dim() == 1 else t).to(device)
    return torch.as_tensor(y, dtype=torch.float32 if loss == "bce" else torch.int64).to(device)


def split_arrays(cfg: Config, ds: Dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The split's raw arrays -- "train", "val" unless it is empty, "test" when there is one;
    label noise only ever touches the training split."""
    d = cfg.data
    stratify = d.stratify and ds.task == "classification"
    if ds.X_val is not None:    # the user's own train/val(/test) split, kept as given
        if d.folds is not None:
            raise ConfigError(f"config key 'data.folds' needs one pool to split; got {d.folds} for "
                              f"data.dataset '{ds.name}', which brings its own validation split")
        idx = SplitIndices(np.arange(len(ds.y)), np.arange(0), None)
    elif d.folds is not None:     # cross-validation of the pool; its own test set takes no part
        idx = fold_indices(ds.y, d.split, d.folds, d.fold, stratify=stratify, seed=d.seed)
    else:
        idx = split_indices(ds.y, d.split, stratify=stratify, seed=d.seed,
                            has_test=ds.X_test is not None)
    if d.train_size is not None:
        idx.train = subsample(idx.train, ds.y, d.train_size, stratify=stratify, seed=d.seed)
    X_train, y_train = ds.X[idx.train], ds.y[idx.train]
    if d.label_noise > 0:
        y_train, _ = flip_labels(y_train, d.label_noise, ds.num_classes, seed=d.seed)
    if d.bootstrap:   # Breiman (1996): n draws with replacement; ~63% of examples appear
        rng = np.random.default_rng(np.random.SeedSequence([cfg.train.seed, 0xB007]))
        draw = rng.integers(0, len(y_train), size=len(y_train))
        X_train, y_train = X_train[draw], y_train[draw]
    arrays = {"train": (X_train, y_train)}
    X_val, y_val = (ds.X[idx.val], ds.y[idx.val]) if ds.X_val is None else (ds.X_val, ds.y_val)
    if len(X_val):      # an empty one (data.split = [1, 0, 0]): no validation split at all
        arrays["val"] = (X_val, y_val)
    if ds.X_test is not None and d.folds is None:
        arrays["test"] = (ds.X_test, ds.y_test)
    elif idx.test is not None:
        arrays["test"] = (ds.X[idx.test], ds.y[idx.test])
    return arrays


def network(cfg: Config, modality: str, sample_shape: tuple, n_out, seed: int) -> torch.nn.Module:
    """The network ``[model]`` describes -- regulab's, or the user's ``model.factory`` given
    regulab's layer-level techniques (``regulab.nn.user``) -- behind an ``Augment`` layer when
    the data's modality has one; initialized from ``seed``, in training mode."""
    augment, shape = build_augment(cfg, modality, tuple(sample_shape))   # its own errors
    m = cfg.model
    if m.factory is not None:
        factory = load_object(m.factory, Field("model.factory")) if isinstance(m.factory, str) else m.factory
        net = make_network(factory, m.args, seed, factory_label(m.factory))
        return adapt(net, regularizers(m, cfg.regularization), init=m.init,
                     generator=torch.Generator().manual_seed(seed), augment=augment).train()
    if m.args:
        raise ConfigError(f"config key 'model.args' holds the keyword arguments of model.factory; "
                          f"got {m.args!r} and no factory")
    net = build_model(m, shape, n_out, torch.Generator().manual_seed(seed), cfg.regularization)
    if augment is not None:
        net = torch.nn.Sequential(OrderedDict([("augment", augment), *net.named_children()]))
    return net


def _build_net(cfg: Config, ds: Dataset, n_out, seed: int, sample: np.ndarray) -> torch.nn.Module:
    """``network``, with one batch passed through it so that a shape mismatch fails here."""
    m = cfg.model
    what = f"model.kind '{m.kind}'" if m.factory is None else f"model.factory '{factory_label(m.factory)}'"
    # a user's network may raise anything on a sample it cannot take
    catch = (ValueError, RuntimeError) if m.factory is None else Exception
    try:
        net = network(cfg, ds.modality, sample.shape[1:], n_out, seed)
        with torch.no_grad():
            out = net.eval()(torch.as_tensor(sample, dtype=torch.float32))
    except catch as e:
        if isinstance(e, RegulabInputError):     # the augmentation's, the factory's own
            raise
        raise DataError(f"{what} cannot take samples of shape {tuple(sample.shape[1:])} from "
                        f"data.dataset '{_dataset_label(cfg)}' ({type(e).__name__}: "
                        f"{' '.join(str(e).split())})") from None
    width = n_out if isinstance(n_out, int) else sum(k for _, k in n_out)   # multi-task: heads side by side
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(sample), width):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(f"{what} output has shape {got}, expected (batch, {width}) for data.dataset "
                        f"'{_dataset_label(cfg)}'")
    return net.train()


def _dataset_label(cfg: Config) -> str:
    d = cfg.data.dataset
    return d if isinstance(d, str) else describe(d)


def _regularizers(cfg: Config, net: torch.nn.Module, task: str):
    """(penalties, constraints, callbacks) of ``[regularization]`` and early stopping (watching
    ``train.monitor``, "auto" resolved for ``task``); layer names checked on ``net``."""
    r = cfg.regularization
    penalties, constraints, callbacks = [], [], []
    if r.l1 > 0 or r.l2 > 0 or r.penalty_layers is not None:
        penalty = NormPenalty(r.l1, r.l2, layers=r.penalty_layers, include_bias=r.penalty_bias)
        penalty(net)    # an unknown layer name is bad input: fail now, before anything is written
        penalties.append(penalty)
    if r.max_norm is not None:
        constraints.append(MaxNorm(r.max_norm))
    if cfg.train.early_stopping:
        callbacks.append(EarlyStopping(task_monitor(cfg.train.monitor, task), cfg.train.patience,
                                       cfg.train.min_delta, cfg.train.restore_best,
                                       baseline=cfg.train.baseline,
                                       start_from_epoch=cfg.train.start_from_epoch))
    if r.ema > 0:
        callbacks.append(EMACallback(r.ema))    # after early stopping: see Trainer.fit
    if extra_columns(cfg):
        callbacks.append(RegularizationMonitor(cfg))
    o = cfg.optim
    if o.schedule != "none" or o.warmup_epochs:
        callbacks.append(LRSchedule(o.schedule, cfg.train.epochs, warmup_epochs=o.warmup_epochs,
                                    step_size=o.step_size, gamma=o.gamma, min_lr=o.min_lr,
                                    patience=o.plateau_patience,
                                    monitor=task_monitor(cfg.train.monitor, task)))
    return penalties, constraints, callbacks


def metric_columns(task: str, extra: list[str], val: bool = True, eval_train: bool = False) -> list[str]:
    """metrics.csv's columns (``extra``: ``extra_columns``); no ``val_*`` column for a run
    without a validation split, the ``clean_train_*`` ones only with ``train.eval_train``."""
    score = ["mse", "r2"] if task == "regression" else ["acc"]
    splits = ["train"] + ["val"] * val + ["clean_train"] * eval_train
    return (["epoch"] + [f"{split}_{s}" for split in splits for s in ("loss", *score)]
            + ["lr", "penalty", *extra, "seconds"])


def extra_columns(cfg: Config) -> list[str]:
    """metrics.csv columns beyond the standard ones, for the techniques in use."""
    r, tasks = cfg.regularization, cfg.multitask.tasks
    splits = ("train", "val", "clean_train") if cfg.train.eval_train else ("train", "val")
    cols = [f"{split}_{name}" for split in splits
            for name in ["total_loss", *(f"{t}_{s}" for t in tasks for s in ("loss", "acc"))]] if tasks else []
    cols += ["l1_penalty"] * (r.l1 > 0) + ["l2_penalty"] * (r.l2 > 0)
    cols += ["max_unit_norm"] * (r.max_norm is not None)
    cols += ["input_noise"] * (r.input_noise > 0) + ["weight_noise"] * (r.weight_noise > 0)
    return cols


def load_data(cfg: Config) -> Dataset:
    """The dataset ``[data]`` names, with only ``data.classes`` kept (relabeled 0, 1, ...)."""
    d = cfg.data
    if not isinstance(d.dataset, str) and d.split_column is not None:
        raise ConfigError(f"config key 'data.split_column' is for a csv:PATH dataset; got "
                          f"{d.split_column!r} for data given from Python (give it as a dict of splits)")
    if not isinstance(d.dataset, str):      # from Python: the data itself (regulab.data.user)
        ds = user_dataset(d.dataset, f"data.dataset {type(d.dataset).__name__}", d.task)
    else:
        ds = load_dataset(d.dataset, target=d.target, task=d.task, n_samples=d.n_samples, seed=d.seed,
                          sections=cfg, lazy=True, split_column=d.split_column)
    if d.classes is None:
        return ds
    if ds.task != "classification":
        raise ConfigError(f"config key 'data.classes' needs a classification dataset; got "
                          f"{d.classes!r} for data.dataset '{d.dataset}' ({ds.task})")
    if len(set(d.classes)) != len(d.classes) or max(d.classes) >= ds.num_classes:
        raise ConfigError(f"config key 'data.classes' must list distinct labels in [0, "
                          f"{ds.num_classes - 1}] of data.dataset '{d.dataset}'; got {d.classes!r}")
    relabel = np.full(ds.num_classes, -1)
    relabel[d.classes] = np.arange(len(d.classes))

    def keep(X, y):
        if X is None:
            return None, None
        mask = relabel[y] >= 0
        return X[mask], relabel[y[mask]]
    X, y = keep(ds.X, ds.y)
    X_val, y_val = keep(ds.X_val, ds.y_val)
    X_test, y_test = keep(ds.X_test, ds.y_test)
    return dataclasses.replace(ds, X=X, y=y, X_val=X_val, y_val=y_val, X_test=X_test, y_test=y_test,
                               classes=[ds.classes[c] for c in d.classes])


def _workers(cfg: Config) -> int:
    return default_workers() if cfg.data.workers is None else cfg.data.workers


def _tasks(cfg: Config, ds: Dataset) -> Tasks | None:
    m = cfg.multitask
    if not m.tasks:
        return None
    return Tasks(ds.num_classes, m.tasks, m.weights, m.main_weight, m.groups, ds.classes,
                 cfg.regularization.label_smoothing)


def _preprocessor(cfg: Config, shape: tuple, source: SourceRun | None, X_train: np.ndarray) -> Preprocessor:
    """Fitted on the training split, or the transfer source's, so its layers see inputs scaled
    as in the training they come from."""
    if source is None or cfg.transfer.preprocess == "refit":
        pre = Preprocessor(cfg.data.preprocess, shape)
        if isinstance(X_train, Rows):   # one streaming pass
            return pre.fit_batches(Streamed(X_train, lambda x: x, "cpu", _workers(cfg)).batches(cfg.eval.batch_size))
        return pre.fit(torch.as_tensor(X_train))
    pre = Preprocessor(source.config.data.preprocess, shape)
    try:
        pre.load_state_dict(source.preprocess_state)
    except RuntimeError:
        raise ConfigError(f"config key 'transfer.source': run '{source.path}' was trained on samples of "
                          f"shape {tuple(source.preprocess_state['shift'].shape)}; data.dataset "
                          f"'{cfg.data.dataset}' has {shape}") from None
    return pre


def _optimizer(cfg: Config, net: torch.nn.Module, transferred: list[str]) -> torch.optim.Optimizer:
    """``[optim]`` over the trainable parameters (transferred ones at ``transfer.lr``), weight
    decay on the parameters the L2 penalty selects (``engine.optimizers``)."""
    r = cfg.regularization
    if cfg.transfer.source is not None and cfg.transfer.freeze:
        freeze_(net, transferred)
    params = net.parameters() if cfg.transfer.source is None else \
        param_groups(net, transferred, cfg.optim.lr, cfg.transfer.lr)
    decay = [p for _, p in selected_parameters(net, r.penalty_layers, r.penalty_bias)]
    return build_optimizer(cfg.optim, params, decay)


def prepare(cfg: Config) -> Prepared:
    """Validate ``cfg`` against its data and build everything; writes nothing."""
    viewers.check(cfg)      # a viewer whose package is missing, before the data is read
    source = load_source(cfg.transfer.source) if cfg.transfer.source is not None else None
    ds, streamed = place(load_data(cfg), cfg.data.resident, cfg.data.memory_budget)
    if streamed:
        return_freed_batches()      # batch-sized buffers back to the system when freed
    _check_task(cfg, ds.task, ds.modality)
    loss = _loss_name(cfg, ds.task, ds.num_classes)
    device = resolve_device(cfg.train.device)
    arrays = split_arrays(cfg, ds)
    if "val" not in arrays and cfg.optim.schedule == "plateau":
        raise ConfigError(f"config keys 'data.split' and 'optim.schedule': the plateau schedule watches "
                          f"the validation split, which is empty; got split={cfg.data.split!r} and "
                          "schedule='plateau' (allowed: a validation fraction > 0, or another schedule)")
    if "val" not in arrays and cfg.train.early_stopping:
        own = "" if ds.X_val is None else f" (data.dataset '{_dataset_label(cfg)}' brings its own, empty)"
        raise ConfigError(f"config keys 'data.split' and 'train.early_stopping': early stopping watches "
                          f"the validation split, which is empty{own}; got split={cfg.data.split!r} and "
                          "early_stopping=true (allowed: a validation fraction > 0, or early_stopping = false)")
    text = featurize(cfg.text, arrays, cfg.data.seed) if ds.modality == "text" else None
    tasks = _tasks(cfg, ds)

    pre = _preprocessor(cfg, arrays["train"][0].shape[1:], source, arrays["train"][0])
    splits = {}
    for name, (X, y) in arrays.items():
        if streamed:    # read by DataLoader workers, preprocessed on the device batch by batch
            splits[name] = (Streamed(X, pre, device, _workers(cfg)),
                            _targets(y if tasks is None else tasks.labels(y), ds.task, loss, device))
            continue
        with torch.no_grad():
            # a cached dataset's own arrays are read-only: torch gets a copy, not a view
            Xt = pre(torch.as_tensor(np.require(X, requirements="W"), dtype=torch.float32))
        splits[name] = (Xt.to(device), _targets(y if tasks is None else tasks.labels(y), ds.task, loss, device))

    init_seed, shuffle_seed, noise_seed = _seeds(cfg.train.seed)
    n_out = (1 if loss == "bce" else ds.n_outputs) if tasks is None else list(zip(tasks.names, tasks.sizes))
    net = _build_net(cfg, ds, n_out, init_seed, arrays["train"][0][:2])
    if source is None:
        transferred = []
    elif cfg.model.factory is None and not isinstance(cfg.transfer.layers, list):
        transferred = transfer_weights(net, source, cfg.transfer.layers)     # regulab's units
    else:
        transferred = transfer_by_name(net, source, cfg.transfer.layers)
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        check_batch_norm_rows(len(arrays["train"][1]), cfg.train.batch_size, cfg.train.nproc)
    optimizer = _optimizer(cfg, net, transferred)
    penalties, constraints, callbacks = _regularizers(cfg, net, ds.task)
    pipeline = Pipeline(pre, net).to(device)

    gen_device = device if device.type == "cuda" else "cpu"
    shuffle = torch.Generator(device=gen_device).manual_seed(shuffle_seed)
    noise = torch.Generator(device=gen_device).manual_seed(noise_seed)
    loader = (StreamLoader if streamed else TensorLoader)(*splits["train"], cfg.train.batch_size,
                                                         shuffle=True, generator=shuffle)
    trainer = Trainer(net, optimizer, loss_function(loss, cfg.regularization.label_smoothing),
                      task=ds.task, binary=loss == "bce", penalties=penalties,
                      constraints=constraints, callbacks=callbacks,
                      generators={"shuffle": shuffle, "noise": noise},
                      eval_batch_size=cfg.eval.batch_size, tasks=tasks, eval_train=cfg.train.eval_train)
    return Prepared(cfg, ds, device, ds.task, splits, pipeline, trainer, loader, noise, text, streamed,
                    n_out)


class RegularizationMonitor(Callback):
    """Adds the values of the techniques in use to each epoch's metrics (and so metrics.csv):
    each penalty term at the epoch's end weights, the largest incoming-weight norm of any unit
    (at most ``max_norm`` while the constraint holds), and the noise levels."""

    stackable = True

    def __init__(self, cfg: Config):
        self.r = cfg.regularization

    @torch.no_grad()
    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        r, model = self.r, trainer.model
        if r.l1 > 0:
            logs["l1_penalty"] = float(NormPenalty(l1=r.l1, layers=r.penalty_layers,
                                                   include_bias=r.penalty_bias)(model))
        if r.l2 > 0:
            logs["l2_penalty"] = float(NormPenalty(l2=r.l2, layers=r.penalty_layers,
                                                   include_bias=r.penalty_bias)(model))
        for constraint in trainer.constraints:
            if isinstance(constraint, MaxNorm):
                logs["max_unit_norm"] = constraint.largest_norm(model)
        if r.input_noise > 0:
            logs["input_noise"] = r.input_noise
        if r.weight_noise > 0:
            logs["weight_noise"] = r.weight_noise
