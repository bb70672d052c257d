"""Fine-tuning: LoRA adapters in PEFT's layout (`lora.py`)."""
