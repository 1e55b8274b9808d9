//! The networks of the paper: generator, discriminators and their building blocks.
