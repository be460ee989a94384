pub mod evaluate;
pub mod features;
pub mod handbook;
pub mod import;
pub mod progress;
pub mod score;
pub mod simulate;
pub mod train;
