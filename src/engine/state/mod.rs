pub mod cell;
pub mod crypto;
pub mod model;
pub mod store;
