//! Code loaded over the wire, as the node machine sees it: a load from an admin or
//! control peer is checked against the registry's limits, handed to the shell to
//! validate and compile, then committed here (versioned, listed in `get_info`).

use super::*;
use crate::message::RemoteError;
use crate::modules::{LoadReply, ModulesConfig};

impl<H: Clone> NodeMachine<H> {
    /// Whether a module of `size` bytes may be loaded as `name` now (before the shell
    /// compiles it); `code_function`: the shell has a function registered in code by
    /// that name.
    pub fn check_module(
        &self,
        name: &str,
        size: usize,
        code_function: bool,
    ) -> Result<(), RemoteError> {
        self.modules.check(name, size, code_function)
    }

    /// A module the shell compiled: registered under `name` with its next version (the
    /// limits are checked again: another load may have come first).
    pub fn commit_module(
        &mut self,
        name: &str,
        size: usize,
        sha256: String,
        export: String,
        loaded_by: String,
    ) -> Result<LoadReply, RemoteError> {
        self.modules.commit(name, size, sha256, export, loaded_by)
    }

    /// The limits of loaded code (the shell runs calls with its fuel and memory caps).
    pub fn modules_config(&self) -> ModulesConfig {
        *self.modules.config()
    }
}
