//! Audio pipeline.
