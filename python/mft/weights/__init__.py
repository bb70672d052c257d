"""Weight files: safetensors I/O, Hugging Face folders, checkpoints."""
