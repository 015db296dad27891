//! Short names for CLI one-shots over the one harness in `binary`: blocking,
//! so plain `#[test]`s read like a shell session
//! (`run(chatgate(dir).arg("check-config")).json()`).

use std::ops::Deref;
use std::path::Path;

use super::binary::block_on;
pub use super::binary::{Chatgate, Output as Finished, Running, fresh_clone};

/// `chatgate` with an empty environment, run in `dir` (where it looks for
/// `config/` and `.env`).
pub fn chatgate(dir: &Path) -> Chatgate {
    Chatgate::in_dir(dir)
}

/// Runs `cmd` to completion (killed and failed past the harness's limit).
pub fn run(cmd: &mut Chatgate) -> Finished {
    let mut cmd = cmd.clone();
    block_on(async move { cmd.output().await })
}

/// A served `chatgate` (a [`Running`]), killed when dropped.
pub struct Served(Running);

impl Served {
    /// Starts `cmd` and waits for its "chatgate listening" line.
    pub fn start(cmd: &mut Chatgate) -> Served {
        let mut cmd = cmd.clone();
        Served(block_on(async move { cmd.spawn().await }))
    }
}

impl Deref for Served {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.0
    }
}
