//! The live engine's stages and caches (DESIGN §5). So far: the on-disk image cache.

pub mod image_cache;
