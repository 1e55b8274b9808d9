//! The paper's evaluation protocol for a checkpoint (`sg2im evaluate`) and the object
//! classifier behind object accuracy (`sg2im train-classifier`).

pub mod layout;
