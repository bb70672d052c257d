//! safetensors (work in progress)
