"""The one config schema: every key a recipe may set, its type and default.

Sections are dataclasses; `mft.config.loader` validates a merged YAML tree
against them (unknown keys, wrong types, missing required keys are errors
naming the file and key path). Fields without a default are required.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union


@dataclass
class RunConfig:
    output_dir: str
    name: str = "mft"
    seed: int = 42
    # graph: train step compiled with ms.jit; pynative: eager, for debugging.
    mode: str = "graph"
    device: str = "CPU"
    # Same config and data -> same bits, whatever the machine's load (training/determinism.py; may cost speed
    # on composed paths). false: MindSpore picks its reduction splits by timing.
    deterministic: bool = True


@dataclass
class ModelConfig:
    arch: str = "llama"
    # A Hugging Face / mft checkpoint folder to start from; sizes then come from it.
    pretrained: Optional[str] = None
    vocab_size: Optional[int] = None  # None: taken from the tokenizer
    hidden_size: int = 256
    intermediate_size: int = 688
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: Optional[int] = None  # None: same as num_heads (MHA)
    head_dim: Optional[int] = None  # None: hidden_size // num_heads
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    initializer_range: float = 0.02
    # Use the fused C++ RMSNorm custom op (csrc/) instead of composed MindSpore ops.
    # null (default): on where mft's C++ kernels run (CPU, kernels built), else off.
    fused_rmsnorm: Optional[bool] = None
    # Use the fused C++ flash-attention custom op (csrc/) for the no-cache causal path.
    # null (default): as fused_rmsnorm, for the families with standard attention (not MLA), in fp32.
    fused_attention: Optional[bool] = None
    # Use the fused C++ RoPE custom op (csrc/kernels/rope.cc, forward and backward) in the attention
    # layers (not MLA). null (default): as fused_rmsnorm, in fp32 (the kernel is float32).
    fused_rope: Optional[bool] = None
    # Compute the training loss with the fused C++ cross-entropy op (csrc/kernels/cross_entropy.cc, one
    # kernel each way, no vocab-wide log-softmax tensor); not under tp (vocab-parallel loss).
    # null (default): on where mft's C++ kernels run.
    fused_cross_entropy: Optional[bool] = None
    # Use the fused C++ SwiGLU activation op (csrc/kernels/swiglu.cc, forward and backward) in the dense
    # MLPs (not MoE experts). null (default): as fused_rmsnorm, in fp32 (the kernel is float32).
    fused_swiglu: Optional[bool] = None
    # ---- MoE families (mixtral, qwen3_moe, deepseek_v3) ----
    num_experts: Optional[int] = None  # routed experts; required for MoE archs
    num_experts_per_tok: int = 2
    moe_intermediate_size: Optional[int] = None  # None: intermediate_size
    norm_topk_prob: bool = True  # renormalise the top-k routing weights (qwen3_moe, deepseek_v3)
    decoder_sparse_step: int = 1  # qwen3_moe: every Nth layer is sparse
    mlp_only_layers: list = field(default_factory=list)  # qwen3_moe: dense layers
    first_k_dense_replace: int = 0  # deepseek_v3: the first K layers are dense
    num_shared_experts: int = 0  # deepseek_v3: always-on experts of moe_intermediate_size
    n_group: int = 1  # deepseek_v3 group-limited routing
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    capacity_factor: float = 0.0  # <= 0: dropless; else tokens per expert = ceil(cf * tokens * k / E), rest dropped
    # Sorted dropless MoE dispatch on mft's C++ permute + grouped-matmul kernels (each expert runs only on
    # its routed tokens). null (default): on where the kernels run, in fp32, when capacity_factor <= 0.
    fused_moe: Optional[bool] = None
    aux_loss_type: str = "global"  # load-balancing loss over the micro-batch (global) or per sequence
    aux_loss_coef: float = 0.0
    router_z_loss_coef: float = 0.0
    expert_bias_update_rate: float = 0.0  # auxiliary-loss-free balancing (deepseek_v3's correction bias)
    # ---- deepseek_v3 multi-head latent attention and multi-token prediction ----
    q_lora_rank: Optional[int] = None
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    mtp_layers: int = 0
    mtp_loss_coef: float = 0.3


@dataclass
class TokenizerConfig:
    path: str  # a Hugging Face tokenizer.json


@dataclass
class DataConfig:
    # Prefix of a Megatron-style indexed dataset (PREFIX.bin / PREFIX.idx).
    prefix: str
    seq_len: int = 256
    # Megatron's --split: "train,valid,test" weights over contiguous document ranges, e.g. "98,2,0".
    # null: every document is trained on (no validation). Held-out documents are never trained on.
    split: Optional[str] = None


@dataclass
class MuonConfig:
    """train.optimizer.name=muon: Newton-Schulz orthogonalised momentum for hidden matrices."""

    momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5  # Newton-Schulz iterations
    # The orthogonal update is scaled by update_rms * sqrt(max(rows, cols)), so its RMS
    # matches AdamW's and the same lr / weight_decay serve both parts (Moonlight's rule).
    update_rms: float = 0.2


@dataclass
class AdafactorConfig:
    """train.optimizer.name=adafactor: factored second moment (row and column means)."""

    decay_rate: float = 0.8  # beta2 at step t = min(betas[1], 1 - t^-decay_rate)
    clip_threshold: float = 1.0  # the update is scaled down to RMS <= clip_threshold


@dataclass
class OptimizerConfig:
    name: str = "adamw"  # adamw | muon | adafactor (docs/feature/training_hyperparameters.md)
    lr: float = 3e-4
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    # [{pattern: REGEX, lr_scale: 1.0, weight_decay: X}]: the first group whose pattern
    # re.search-es a parameter name sets its lr multiplier / weight decay.
    param_groups: list = field(default_factory=list)
    muon: MuonConfig = field(default_factory=MuonConfig)
    adafactor: AdafactorConfig = field(default_factory=AdafactorConfig)
    # adamw: clip + update of every tensor in one C++ kernel (csrc/kernels/clip_adamw.cc) instead of
    # ~2 launches per tensor. null (default): on where mft's kernels run (CPU), for fp32 weights and a
    # local gradient norm (not under tp/ep/ZeRO, which keep the composed update).
    fused: Optional[bool] = None


@dataclass
class LrScheduleConfig:
    # constant | linear | cosine | cosine_restarts | polynomial | inverse_sqrt | wsd
    name: str = "cosine"
    warmup_steps: int = 0
    min_lr: float = 0.0
    cycles: int = 2  # cosine_restarts: cosine cycles after warmup
    power: float = 1.0  # polynomial: (1 - progress)^power
    timescale: int = 0  # inverse_sqrt: lr = peak * sqrt(T / (T + steps after warmup)); 0 = warmup_steps or 1
    decay_fraction: float = 0.2  # wsd: the last fraction of train.steps decays
    decay_shape: str = "linear"  # wsd: linear | cosine | 1-sqrt


@dataclass
class LossScaleConfig:
    """train.precision=fp16: dynamic loss scaling (docs/feature/other_training_features.md)."""

    initial_scale: float = 65536.0
    growth_factor: float = 2.0  # the scale is multiplied by this after growth_interval clean steps, divided on overflow
    growth_interval: int = 1000
    min_scale: float = 1.0


@dataclass
class TrainConfig:
    steps: int = 100
    micro_batch_size: int = 8
    # Micro-batches whose gradients are summed before one optimizer step.
    grad_accum_steps: int = 1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: LrScheduleConfig = field(default_factory=LrScheduleConfig)
    clip_grad_norm: Optional[float] = 1.0
    # fp32 | fp16 | bf16: compute dtype; weights, gradients and optimizer state stay fp32.
    precision: str = "fp32"
    loss_scale: LossScaleConfig = field(default_factory=LossScaleConfig)
    # Recompute activations in the backward instead of keeping them: none | full (whole decoder
    # layers) | selective (only each layer's attention core and SwiGLU activation). docs/feature/memory_optimization.md
    recompute: str = "none"
    recompute_layers: int = 0  # with recompute full/selective: only the first N decoder layers (0 = all of them)
    # Offload kept activations to host memory in forward, fetched back in backward (MindSpore Cell.offload:
    # Ascend/GPU with run.mode=graph). Refused on CPU, where host and device memory are one.
    offload_activations: bool = False
    # A non-finite (NaN/Inf) loss or gradient norm (not an fp16 overflow, which skips by itself):
    # raise (stop; the state before the step is saved) | skip (the update is not applied) |
    # rollback (reload the newest complete checkpoint, skip the batches since it). docs/feature/high_availability.md
    nan_action: str = "raise"


@dataclass
class ParallelConfig:
    dp: int = 1
    tp: int = 1
    pp: int = 1
    # Expert parallel (MoE families): ranks the routed experts are spread over, folded over dp (divides parallel.dp and the expert count).
    ep: int = 1
    cp: int = 1
    sp: bool = False
    zero: int = 0
    # Pipeline micro-batches per step (1F1B); null = train.grad_accum_steps, the only value accepted (they are the same micro-batches).
    micro_batches: Optional[int] = None
    # Decoder layers per pipeline stage, e.g. [3, 5]: parallel.pp counts summing to the model's layers; null = even split.
    pp_layers: Optional[list] = None


@dataclass
class CheckpointConfig:
    every_steps: int = 0  # 0: only at the end
    keep: int = 3  # newest N step folders kept; 0 keeps all
    # never | auto (continue from output_dir/checkpoints/latest if there) | a checkpoint folder
    resume: str = "never"
    # On an exception inside a step (or a NaN loss with train.nan_action=raise), save the state
    # after the last completed step before re-raising (no host copy: see docs/feature/high_availability.md).
    save_on_error: bool = True


@dataclass
class SpikeConfig:
    """Loss / grad-norm spike detection (docs/feature/monitor.md)."""

    # off | warn | skip (the spiking step's update is not applied) | rollback (the newest checkpoint is
    # reloaded and the batches since it, the spiking one included, are skipped; needs checkpoint.every_steps)
    action: str = "warn"
    window: int = 50  # running median over the last N accepted values
    min_history: int = 10  # no detection before this many accepted values
    loss_factor: float = 1.5  # spike: loss > factor x median (0 = not checked)
    grad_norm_factor: float = 4.0  # spike: grad_norm > factor x median (0 = not checked)
    consecutive: int = 5  # this many spikes in a row are a new level, not a spike (see docs)


@dataclass
class MonitorConfig:
    log_every: int = 1
    progress_bar: bool = True
    tensorboard: bool = True
    # Weight histograms to TensorBoard every N steps (0 = off); needs monitor.tensorboard.
    histograms_every: int = 0
    # With histograms_every: gradient histograms too (one extra forward/backward of that step's batch).
    grad_histograms: bool = False
    # Validation loss/perplexity on data.split's valid documents every N steps (0 = off).
    eval_every: int = 0
    eval_batches: int = 4  # micro-batches of train.micro_batch_size per validation
    peak_memory: bool = True  # peak_memory_mb (process peak RSS)
    mfu: bool = True  # model-FLOPs utilisation against a matmul ceiling measured at start
    peak_tflops: float = 0.0  # > 0: use this ceiling (per process) instead of measuring
    layer_norms: bool = False  # grad_norm/<group>, weight_norm/<group> per decoder layer
    optimizer_state_norm: bool = False  # optimizer_state_norm (reads all optimizer state)
    spike: SpikeConfig = field(default_factory=SpikeConfig)


@dataclass
class LoraConfig:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    # As PEFT reads it: a list of module-name suffixes, or one regex string matching whole module paths.
    target_modules: Any = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    use_rslora: bool = False  # scaling alpha / sqrt(r) instead of alpha / r
    # Modules trained in full beside the adapters and saved in the adapter file, as PEFT's modules_to_save
    # (e.g. [lm_head] or [embed_tokens]; a module matches when its path ends in the name); null: none.
    modules_to_save: Any = None


@dataclass
class DistillConfig:
    # Teacher model folder (Hugging Face or mft checkpoint; same vocabulary as the student); null: no distillation.
    teacher: Optional[str] = None
    temperature: float = 1.0  # softmax temperature T of both models' soft targets (> 0)
    alpha: float = 0.5  # loss = alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE on the labels; in [0, 1]


@dataclass
class FinetuneConfig:
    # full: every weight trains; lora: only LoRA adapters (finetune.lora), base weights frozen (docs/guide/supervised_fine_tuning.md).
    method: str = "full"
    lora: LoraConfig = field(default_factory=LoraConfig)
    # auto: when data.prefix has PREFIX_mask.bin/.idx (mft data preprocess --format sft), labels it masks are ignored.
    loss_mask: str = "auto"
    # true: whole conversations packed per data.seq_len row, attention and positions reset per conversation.
    packing: bool = False
    # Vision-language models (llava, qwen2_5_vl; docs/advanced/multi_modal_dev.md): whether the vision tower trains.
    vision_tower: str = "frozen"
    projector: str = "trainable"  # VLM: whether the projector (LLaVA multi_modal_projector, Qwen2.5-VL merger) trains
    language_model: str = "trainable"  # VLM: whether the language model trains (frozen + projector trainable = pre-alignment)
    # Logit distillation from a teacher model (docs/guide/supervised_fine_tuning.md#distillation).
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass
class Config:
    run: RunConfig
    tokenizer: TokenizerConfig
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


# model.fused_attention=null (auto) leaves these off: the flash kernel does not cover
# MLA, whose value and query/key head dims differ.
NO_FUSED_ATTENTION = ("deepseek_v3",)

# Allowed values for string-enum keys, checked after typing.
CHOICES: dict[str, tuple[str, ...]] = {
    "run.mode": ("graph", "pynative"),
    "finetune.method": ("full", "lora"),
    "finetune.loss_mask": ("auto", "none"),
    "finetune.vision_tower": ("frozen", "trainable"),
    "finetune.projector": ("frozen", "trainable"),
    "finetune.language_model": ("frozen", "trainable"),
    "run.device": ("CPU", "Ascend", "GPU"),
    "model.arch": ("llama", "qwen2", "qwen3", "mixtral", "qwen3_moe", "deepseek_v3", "mistral", "llava", "qwen2_5_vl"),
    "model.aux_loss_type": ("global", "sequence", "none"),
    "train.optimizer.name": ("adamw", "muon", "adafactor"),
    "train.lr_schedule.name": ("constant", "linear", "cosine", "cosine_restarts", "polynomial", "inverse_sqrt", "wsd"),
    "train.lr_schedule.decay_shape": ("linear", "cosine", "1-sqrt"),
    "train.precision": ("fp32", "fp16", "bf16"),
    "train.nan_action": ("raise", "skip", "rollback"),
    "train.recompute": ("none", "full", "selective"),
    "monitor.spike.action": ("off", "warn", "skip", "rollback"),
    "checkpoint.resume": None,  # free-form: validated by the trainer (never/auto/path)
}

Scalar = Union[str, int, float, bool, None]
