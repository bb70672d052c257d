//! Resharding: moving tensor boxes between checkpoints of different layouts.
//!
//! A layout (JSON, `mft-checkpoint-layout`) says, for every tensor, its global
//! shape and dtype and which box of it (offset + shape) each file stores.
//! Python decides the target layout from data-driven sharding rules; this
//! module only moves bytes: every target box is assembled from the source
//! boxes that intersect it, straight from the source files' memory maps into
//! the target files' maps, many tensors at once. Nothing holds the model in
//! memory; float dtypes convert on the way when the layouts' dtypes differ.

mod boxcopy;
mod execute;
mod layout;
mod sources;

pub use boxcopy::copy_intersection;
pub use execute::{read_boxes, reshard, Stats};
pub use layout::{Layout, Piece, TensorLayout};
pub use sources::{BoxRequest, Sources};
