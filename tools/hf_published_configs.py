"""config.json files of published checkpoints, written out from memory of those files (no hub access here, so a
value may differ from the file online; the keys are the ones such files carry): data for
tools/make_hf_variant_fixtures.py, which has transformers resolve each one into
tests/fixtures/hf_variants/published.json for tests/python/test_hf_variants.py.

LOADS: name -> (config, a few values mft must read). REFUSED: name -> (config, the key the refusal names).
VLM: name -> a vision-language config (LLaVA-1.5's top-level vocab_size, Qwen2.5-VL's flat text keys).
"""

L2 = {"_name_or_path": "meta-llama/Llama-2-7b-hf", "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
      "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 4096,
      "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1,
      "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "float16",
      "transformers_version": "4.31.0.dev0", "use_cache": True, "vocab_size": 32000}
CODELLAMA = {**L2, "_name_or_path": "codellama/CodeLlama-7b-hf", "rope_theta": 1000000, "max_position_embeddings": 16384, "vocab_size": 32016,
             "torch_dtype": "bfloat16", "transformers_version": "4.33.0.dev0"}
TINY = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 2048, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 22, "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.35.0", "use_cache": True, "vocab_size": 32000}
L31 = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
       "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
       "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32,
       "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
       "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
       "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.42.3", "use_cache": True,
       "vocab_size": 128256}
L32 = {**L31, "head_dim": 64, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
       "rope_scaling": {**L31["rope_scaling"], "factor": 32.0}, "tie_word_embeddings": True, "transformers_version": "4.45.0.dev0"}
L33 = {**L31, "hidden_size": 8192, "intermediate_size": 28672, "num_attention_heads": 64, "num_hidden_layers": 80, "transformers_version": "4.47.0.dev0"}
M01 = {"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
       "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
       "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
       "sliding_window": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0",
       "use_cache": True, "vocab_size": 32000}
M03 = {**M01, "attention_dropout": 0.0, "rope_theta": 1000000.0, "sliding_window": None, "transformers_version": "4.42.0.dev0", "vocab_size": 32768}
NEMO = {**M03, "head_dim": 128, "hidden_size": 5120, "num_hidden_layers": 40, "max_position_embeddings": 1024000, "vocab_size": 131072,
        "transformers_version": "4.43.0.dev0"}
MIX = {"architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
       "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
       "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8,
       "output_router_logits": False, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02, "sliding_window": None,
       "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.36.0.dev0", "use_cache": True, "vocab_size": 32000}
MIX22 = {**MIX, "hidden_size": 6144, "intermediate_size": 16384, "max_position_embeddings": 65536, "num_attention_heads": 48,
         "num_hidden_layers": 56, "router_aux_loss_coef": 0.001, "vocab_size": 32768, "transformers_version": "4.38.0"}
Q15 = {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
       "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 2816, "max_position_embeddings": 32768, "max_window_layers": 21,
       "model_type": "qwen2", "num_attention_heads": 16, "num_hidden_layers": 24, "num_key_value_heads": 16, "rms_norm_eps": 1e-06,
       "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
       "transformers_version": "4.37.0", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936}
Q25 = {**Q15, "hidden_size": 3584, "intermediate_size": 18944, "max_window_layers": 28, "num_attention_heads": 28, "num_hidden_layers": 28,
       "num_key_value_heads": 4, "sliding_window": 131072, "tie_word_embeddings": False, "transformers_version": "4.43.1", "vocab_size": 152064}
Q25_YARN = {**Q25, "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}}
Q3 = {"architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
      "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 12288,
      "max_position_embeddings": 40960, "max_window_layers": 36, "model_type": "qwen3", "num_attention_heads": 32, "num_hidden_layers": 36,
      "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None,
      "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": True,
      "use_sliding_window": False, "vocab_size": 151936}
Q3MOE = {"architectures": ["Qwen3MoeForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643,
         "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
         "intermediate_size": 6144, "max_position_embeddings": 40960, "max_window_layers": 48, "mlp_only_layers": [], "model_type": "qwen3_moe",
         "moe_intermediate_size": 768, "norm_topk_prob": True, "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8,
         "num_hidden_layers": 48, "num_key_value_heads": 4, "output_router_logits": False, "rms_norm_eps": 1e-06, "rope_scaling": None,
         "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001, "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
         "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936}
AUTO = {"AutoConfig": "configuration_deepseek.DeepseekV3Config", "AutoModel": "modeling_deepseek.DeepseekV3Model",
        "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"}
FP8 = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}
DSV3 = {"architectures": ["DeepseekV3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "auto_map": AUTO, "aux_loss_alpha": 0.001,
        "bos_token_id": 0, "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": 3, "hidden_act": "silu", "hidden_size": 7168,
        "initializer_range": 0.02, "intermediate_size": 18432, "kv_lora_rank": 512, "max_position_embeddings": 163840, "model_type": "deepseek_v3",
        "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256, "n_shared_experts": 1, "norm_topk_prob": True,
        "num_attention_heads": 128, "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128, "num_nextn_predict_layers": 1,
        "pretraining_tp": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "quantization_config": FP8,
        "rms_norm_eps": 1e-06, "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                                               "original_max_position_embeddings": 4096, "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "seq_aux": True, "tie_word_embeddings": False,
        "topk_group": 4, "topk_method": "noaux_tc", "torch_dtype": "bfloat16", "transformers_version": "4.33.1", "use_cache": True,
        "v_head_dim": 128, "vocab_size": 129280}
DSV3_BF16 = {k: v for k, v in DSV3.items() if k != "quantization_config"}
MOON = {"architectures": ["DeepseekV3ForCausalLM"], "auto_map": AUTO, "vocab_size": 163840, "hidden_size": 2048, "intermediate_size": 11264,
        "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16, "n_shared_experts": 2,
        "n_routed_experts": 64, "ep_size": 1, "routed_scaling_factor": 2.446, "kv_lora_rank": 512, "q_lora_rank": None, "qk_rope_head_dim": 64,
        "v_head_dim": 128, "qk_nope_head_dim": 128, "topk_method": "noaux_tc", "n_group": 1, "topk_group": 1, "num_experts_per_tok": 6,
        "moe_layer_freq": 1, "first_k_dense_replace": 1, "norm_topk_prob": True, "scoring_func": "sigmoid", "aux_loss_alpha": 0.001,
        "seq_aux": True, "hidden_act": "silu", "max_position_embeddings": 8192, "initializer_range": 0.02, "rms_norm_eps": 1e-05,
        "use_cache": True, "pad_token_id": 163839, "bos_token_id": 163584, "eos_token_id": 163585, "pretraining_tp": 1,
        "tie_word_embeddings": False, "rope_theta": 50000.0, "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0,
        "torch_dtype": "bfloat16", "transformers_version": "4.47.1", "model_type": "deepseek_v3"}
KIMI = {**DSV3_BF16, "model_type": "kimi_k2", "bos_token_id": 163584, "eos_token_id": 163585, "first_k_dense_replace": 1, "n_group": 1,
        "topk_group": 1, "n_routed_experts": 384, "num_attention_heads": 64, "num_key_value_heads": 64, "num_nextn_predict_layers": 0,
        "max_position_embeddings": 131072, "rope_theta": 50000.0, "routed_scaling_factor": 2.827, "vocab_size": 163840,
        "rope_scaling": {"beta_fast": 1.0, "beta_slow": 1.0, "factor": 32.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                         "original_max_position_embeddings": 4096, "type": "yarn"}}
LOADS = {"Llama-2-7b-hf": (L2, {"num_key_value_heads": 32, "rope_theta": 10000.0}),
         "CodeLlama-7b-hf": (CODELLAMA, {"rope_theta": 1e6}),
         "TinyLlama-1.1B-Chat-v1.0": (TINY, {"num_key_value_heads": 4}),
         "Llama-3.1-8B-Instruct": (L31, {"rope_type": "llama3", "eos_token_id": [128001, 128008, 128009]}),
         "Llama-3.2-1B-Instruct": (L32, {"head_dim": 64, "tie_word_embeddings": True}),
         "Llama-3.3-70B-Instruct": (L33, {"head_dim": 128}),
         "Mistral-7B-Instruct-v0.3": (M03, {"model_type": "mistral", "head_dim": 128}),
         "Mistral-Nemo-Instruct-2407": (NEMO, {"head_dim": 128}),
         "Mixtral-8x7B-Instruct-v0.1": (MIX, {"num_local_experts": 8}),
         "Mixtral-8x22B-v0.1": (MIX22, {"head_dim": 128}),
         "Qwen1.5-0.5B-Chat": (Q15, {"tie_word_embeddings": True, "head_dim": 64}),
         "Qwen2.5-7B-Instruct": (Q25, {"num_key_value_heads": 4}),
         "Qwen2.5-7B-Instruct with the yarn block of its README": (Q25_YARN, {"rope_type": "yarn"}),
         "Qwen3-8B": (Q3, {"head_dim": 128, "rope_theta": 1e6}),
         "Qwen3-30B-A3B": (Q3MOE, {"num_experts": 128, "norm_topk_prob": True}),
         "DeepSeek-V3 / R1 converted to bf16 (quantization_config removed)": (DSV3_BF16, {"rope_type": "yarn", "q_lora_rank": 1536}),
         "Moonlight-16B-A3B": (MOON, {"q_lora_rank": None, "n_group": 1}),
         "Kimi-K2-Instruct converted to bf16": (KIMI, {"n_routed_experts": 384})}
REFUSED = {"Mistral-7B-v0.1": (M01, "sliding_window=4096"),
           "DeepSeek-V3 (fp8 quantization_config)": (DSV3, "quantization_config")}

LLAVA15 = {"architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": 32000, "model_type": "llava",
           "pad_token_id": 32001, "projector_hidden_act": "gelu",
           "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"], "max_position_embeddings": 4096,
                           "model_type": "llama", "rms_norm_eps": 1e-05, "torch_dtype": "float16", "vocab_size": 32064},
           "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0",
           "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "model_type": "clip_vision_model",
                             "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
           "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064}
QVL = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
       "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
       "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944,
       "max_position_embeddings": 128000, "max_window_layers": 28, "model_type": "qwen2_5_vl", "num_attention_heads": 28,
       "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
       "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": True, "use_sliding_window": False,
       "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "in_chans": 3,
                         "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                         "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
       "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 152064}
VLM = {"llava-1.5-7b-hf": LLAVA15, "Qwen2.5-VL-7B-Instruct (flat text keys)": QVL}
