//! The registry of code loaded over the wire (WebAssembly modules, `nkcluster load`):
//! which names are loaded, at which version, by whom, and the limits that decide whether
//! a module is accepted. The shell validates and compiles the bytes (wasmi) between
//! [`ModuleRegistry::check`] and [`ModuleRegistry::commit`], and runs calls with the
//! fuel and memory caps of [`ModulesConfig`]; every decision is made here.
//!
//! A load under a name already loaded replaces it: the version goes up and new calls
//! reach the new module (calls already running finish with the old one). A name of a
//! function registered in code (`node`, `echo`, an application's) cannot be taken.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::message::RemoteError;

/// The limits of loaded code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModulesConfig {
    /// Largest module accepted, bytes (binary form).
    pub max_size: usize,
    /// Modules loaded at once (a replacement does not count twice).
    pub max_modules: usize,
    /// Fuel each call may burn (about one unit per executed instruction); a call that
    /// runs out ends with `out_of_fuel`.
    pub fuel_per_call: u64,
    /// Linear memory one call's instance may have, bytes (a module declaring more is
    /// refused at load; `memory.grow` beyond it fails with -1).
    pub max_memory: usize,
}

/// Default [`ModulesConfig::max_size`]: 4 MiB (a request travels in one frame; the
/// default frame limit is 8 MiB).
pub const DEFAULT_MAX_SIZE: usize = 4 << 20;
/// Default [`ModulesConfig::max_modules`].
pub const DEFAULT_MAX_MODULES: usize = 64;
/// Default [`ModulesConfig::fuel_per_call`]: 50 million (an endless loop ends in about
/// 0.35 s on a debug build, measured by the end-to-end test `tests/tests/wasm.rs`).
pub const DEFAULT_FUEL: u64 = 50_000_000;
/// Default [`ModulesConfig::max_memory`]: 64 MiB.
pub const DEFAULT_MAX_MEMORY: usize = 64 << 20;
/// Longest module name.
pub const MAX_NAME: usize = 64;

impl Default for ModulesConfig {
    fn default() -> Self {
        ModulesConfig {
            max_size: DEFAULT_MAX_SIZE,
            max_modules: DEFAULT_MAX_MODULES,
            fuel_per_call: DEFAULT_FUEL,
            max_memory: DEFAULT_MAX_MEMORY,
        }
    }
}

/// The body of `nkcluster.load`: a module for the named function `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRequest {
    /// The function name it registers (what `call` names).
    pub name: String,
    /// The module, WebAssembly binary format (the CLI compiles text first).
    pub module: bytes::Bytes,
    /// Who the client says it is (logged beside the authenticated peer that sent it:
    /// a routed load arrives from the control node that routed it).
    pub origin: String,
}

/// The reply to a load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReply {
    /// The loaded module, as `get_info` lists it.
    pub module: ModuleInfo,
    /// The version it replaced, if any.
    pub replaced: Option<u64>,
}

/// One loaded module, as `get_info` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// Function name.
    pub name: String,
    /// 1 for the first load under this name, one more for each replacement.
    pub version: u64,
    /// Size, bytes.
    pub size: usize,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// The exported function calls run.
    pub export: String,
    /// Who loaded it (`peer (origin)`).
    pub loaded_by: String,
}

/// Who loaded a module, for the log and `get_info`: the authenticated peer, its role,
/// and the client id the request claims (peer input: control characters dropped, at most
/// [`MAX_NAME`] characters kept).
pub fn loaded_by(peer: &str, role: &str, origin: &str) -> String {
    let origin: String = origin
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    format!("{peer} ({role}, says {origin})")
}

/// Loaded modules by name. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct ModuleRegistry {
    config: ModulesConfig,
    /// By name (names are never unloaded, so a version is never reused).
    modules: BTreeMap<String, ModuleInfo>,
}

impl ModuleRegistry {
    /// An empty registry with these limits.
    pub fn new(config: ModulesConfig) -> Self {
        ModuleRegistry {
            config,
            ..Default::default()
        }
    }

    /// The limits.
    pub fn config(&self) -> &ModulesConfig {
        &self.config
    }

    /// Modules loaded now.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether none is loaded.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Whether a module of `size` bytes may be loaded as `name` (before compiling it);
    /// `code_function`: a function registered in code has that name.
    pub fn check(&self, name: &str, size: usize, code_function: bool) -> Result<(), RemoteError> {
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(valid) {
            return Err(RemoteError::new(
                ErrorCode::BadRequest,
                format!("module name {name:?}: 1 to {MAX_NAME} characters of A-Z a-z 0-9 _ - ."),
            ));
        }
        if code_function {
            return Err(RemoteError::new(
                ErrorCode::Forbidden,
                format!("{name} is a function registered in code; it cannot be replaced"),
            ));
        }
        if size > self.config.max_size {
            return Err(RemoteError::new(
                ErrorCode::TooLarge,
                format!(
                    "module of {size} bytes is over the {} byte limit",
                    self.config.max_size
                ),
            ));
        }
        if !self.modules.contains_key(name) && self.modules.len() >= self.config.max_modules {
            return Err(RemoteError::new(
                ErrorCode::TooManyModules,
                format!(
                    "{} modules are loaded, the most this node takes",
                    self.config.max_modules
                ),
            ));
        }
        Ok(())
    }

    /// Registers a compiled module (checked again: another load may have come first)
    /// and gives it its version.
    pub fn commit(
        &mut self,
        name: &str,
        size: usize,
        sha256: String,
        export: String,
        loaded_by: String,
    ) -> Result<LoadReply, RemoteError> {
        self.check(name, size, false)?;
        let version = self.modules.get(name).map_or(0, |m| m.version) + 1;
        let module = ModuleInfo {
            name: name.to_owned(),
            version,
            size,
            sha256,
            export,
            loaded_by,
        };
        let replaced = self
            .modules
            .insert(name.to_owned(), module.clone())
            .map(|m| m.version);
        Ok(LoadReply { module, replaced })
    }

    /// The loaded modules, by name.
    pub fn list(&self) -> Vec<ModuleInfo> {
        self.modules.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ModuleRegistry {
        ModuleRegistry::new(ModulesConfig {
            max_size: 100,
            max_modules: 2,
            fuel_per_call: 1000,
            max_memory: 65536,
        })
    }

    fn code(r: Result<(), RemoteError>) -> Option<String> {
        r.err().map(|e| e.code.as_str().to_owned())
    }

    fn load(r: &mut ModuleRegistry, name: &str) -> Result<LoadReply, RemoteError> {
        r.commit(name, 10, "ab".into(), "run".into(), "admin-1".into())
    }

    #[test]
    fn names_sizes_and_code_functions_are_checked() {
        let r = small();
        assert_eq!(code(r.check("add", 100, false)), None);
        assert_eq!(code(r.check("a.b-c_9", 1, false)), None);
        assert_eq!(
            code(r.check("add", 101, false)).as_deref(),
            Some("too_large")
        );
        assert_eq!(code(r.check("", 1, false)).as_deref(), Some("bad_request"));
        assert_eq!(
            code(r.check("a b", 1, false)).as_deref(),
            Some("bad_request")
        );
        assert_eq!(
            code(r.check("../x", 1, false)).as_deref(),
            Some("bad_request")
        );
        let long = "x".repeat(MAX_NAME + 1);
        assert_eq!(
            code(r.check(&long, 1, false)).as_deref(),
            Some("bad_request")
        );
        assert_eq!(code(r.check("echo", 1, true)).as_deref(), Some("forbidden"));
    }

    #[test]
    fn loads_count_versions_and_replacements_take_no_new_slot() {
        let mut r = small();
        let first = load(&mut r, "add").expect("loads");
        assert_eq!(
            first,
            LoadReply {
                module: ModuleInfo {
                    name: "add".into(),
                    version: 1,
                    size: 10,
                    sha256: "ab".into(),
                    export: "run".into(),
                    loaded_by: "admin-1".into(),
                },
                replaced: None,
            }
        );
        assert_eq!(load(&mut r, "mul").expect("loads").module.version, 1);
        // Full: a new name is refused, a replacement is not.
        assert_eq!(
            code(r.check("sub", 10, false)).as_deref(),
            Some("too_many_modules")
        );
        assert_eq!(
            load(&mut r, "sub").map_err(|e| e.code.as_str().to_owned()),
            Err("too_many_modules".to_owned())
        );
        let again = load(&mut r, "add").expect("replaces");
        assert_eq!((again.module.version, again.replaced), (2, Some(1)));
        let third = load(&mut r, "add").expect("replaces");
        assert_eq!((third.module.version, third.replaced), (3, Some(2)));
        assert_eq!(
            r.list()
                .iter()
                .map(|m| (m.name.as_str(), m.version))
                .collect::<Vec<_>>(),
            vec![("add", 3), ("mul", 1)]
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn who_loaded_is_the_peer_and_a_cleaned_claim() {
        assert_eq!(
            loaded_by("c1", "control", "admin-7"),
            "c1 (control, says admin-7)"
        );
        let long = format!("x\n{}", "y".repeat(100));
        assert_eq!(
            loaded_by("c1", "control", &long),
            format!("c1 (control, says x{})", "y".repeat(MAX_NAME - 1))
        );
    }

    #[test]
    fn load_bodies_round_trip() {
        let req = LoadRequest {
            name: "add".into(),
            module: bytes::Bytes::from_static(b"\0asm\x01\0\0\0"),
            origin: "admin-7".into(),
        };
        let body = postcard::to_allocvec(&req).expect("encodes");
        assert_eq!(postcard::from_bytes::<LoadRequest>(&body), Ok(req));
    }
}
