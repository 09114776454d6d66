//! The WebAssembly engine for code loaded over the wire (`nkcluster load`), on `wasmi`:
//! validates and compiles a module, then runs calls of it sandboxed. The limits (fuel per
//! call, memory) and the decision to accept a module come from the core
//! ([`nkcluster_core::modules`]); this only performs them.
//!
//! The calling convention (what `nkcluster call NODE NAME ARGS…` reaches):
//! - the module imports nothing;
//! - the function run is the exported function named like the module (`--name`), else
//!   the one named `run`, else the module's only exported function;
//! - its parameters are `i32`, `i64`, `f32` or `f64`, one per call argument, parsed from
//!   the argument strings (a wrong count or a number that does not parse is
//!   `bad_request`);
//! - its results (any number of the same types) are printed in decimal, space
//!   separated (none: an empty answer).
//!
//! Every call gets a fresh instance in a store of its own with the call's fuel and a
//! memory cap: an endless loop ends with `out_of_fuel`, a trap with `wasm_trap` and its
//! message, and nothing survives from one call to the next.

use std::sync::Arc;

use nkcluster_core::error::ErrorCode;
use nkcluster_core::message::RemoteError;
use nkcluster_core::modules::ModulesConfig;
use wasmi::{
    Config, Engine, ExternType, FuncType, Linker, Module, Store, StoreLimits, StoreLimitsBuilder,
    Val, ValType,
};

/// A compiled module, ready to be called.
#[derive(Clone)]
pub struct WasmFunction {
    engine: Engine,
    module: Module,
    /// The export calls run.
    export: String,
    ty: FuncType,
    config: ModulesConfig,
}

impl std::fmt::Debug for WasmFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmFunction")
            .field("export", &self.export)
            .field("ty", &self.ty)
            .finish()
    }
}

/// The engine (fuel metering on), shared by every module of the process.
pub fn engine() -> &'static Engine {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut c = Config::default();
        c.consume_fuel(true);
        Engine::new(&c)
    })
}

fn invalid(msg: impl std::fmt::Display) -> RemoteError {
    RemoteError::new(ErrorCode::InvalidModule, msg.to_string())
}

/// The error of a failed call: `out_of_fuel`, or `wasm_trap` with the trap's message.
fn run_error(e: &wasmi::Error) -> RemoteError {
    match e.as_trap_code() {
        Some(wasmi::TrapCode::OutOfFuel) => RemoteError::new(
            ErrorCode::OutOfFuel,
            "the call burnt all its fuel (an endless loop?)",
        ),
        _ => RemoteError::new(ErrorCode::WasmTrap, e.to_string()),
    }
}

fn numeric(t: &ValType) -> bool {
    matches!(t, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64)
}

/// Validates and compiles `bytes` for the function `name`: `invalid_module` when it does
/// not validate, imports anything, has no function to run, uses other types than numbers,
/// or does not instantiate within the limits (its start function runs once here).
pub fn compile(
    engine: &Engine,
    name: &str,
    bytes: &[u8],
    config: ModulesConfig,
) -> Result<WasmFunction, RemoteError> {
    let module = Module::new(engine, bytes).map_err(invalid)?;
    if let Some(i) = module.imports().next() {
        return Err(invalid(format!(
            "the module imports {}.{}; loaded modules may import nothing",
            i.module(),
            i.name()
        )));
    }
    let funcs: Vec<(String, FuncType)> = module
        .exports()
        .filter_map(|e| match e.ty() {
            ExternType::Func(t) => Some((e.name().to_owned(), t.clone())),
            _ => None,
        })
        .collect();
    let pick = |n: &str| funcs.iter().find(|(e, _)| e == n);
    let (export, ty) = match (pick(name), pick("run"), funcs.as_slice()) {
        (Some(f), _, _) | (None, Some(f), _) | (None, None, [f]) => f.clone(),
        _ => {
            return Err(invalid(format!(
                "no function to run: export one named {name:?} or \"run\" (or only one \
                 function); exported: {:?}",
                funcs.iter().map(|(e, _)| e).collect::<Vec<_>>()
            )));
        }
    };
    if !ty.params().iter().chain(ty.results()).all(numeric) {
        return Err(invalid(format!(
            "{export} has type {ty:?}: only i32, i64, f32 and f64 parameters and results"
        )));
    }
    let f = WasmFunction {
        engine: engine.clone(),
        module,
        export,
        ty,
        config,
    };
    // Instantiated once now, so that a module too big for the memory cap or whose start
    // function traps is refused at load, not at its first call.
    f.instantiate()
        .map_err(|e| invalid(format!("does not instantiate: {}", e.message)))?;
    Ok(f)
}

impl WasmFunction {
    /// The export calls run.
    pub fn export(&self) -> &str {
        &self.export
    }

    /// A fresh instance in a store of its own, with the call's fuel and memory cap.
    fn instantiate(&self) -> Result<(Store<StoreLimits>, wasmi::Instance), RemoteError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.config.max_memory)
            .instances(1)
            .tables(4)
            .table_elements(100_000)
            .memories(1)
            .build();
        let mut store = Store::new(&self.engine, limits);
        store.limiter(|l| l);
        store
            .set_fuel(self.config.fuel_per_call)
            .map_err(|e| RemoteError::new(ErrorCode::InternalError, e.to_string()))?;
        let linker = <Linker<StoreLimits>>::new(&self.engine);
        let instance = linker
            .instantiate_and_start(&mut store, &self.module)
            .map_err(|e| run_error(&e))?;
        Ok((store, instance))
    }

    /// Runs one call with these arguments (see the module docs).
    pub fn call(&self, args: &[String]) -> Result<String, RemoteError> {
        let params = self.ty.params();
        if args.len() != params.len() {
            return Err(RemoteError::new(
                ErrorCode::BadRequest,
                format!(
                    "{} takes {} argument(s) ({:?}), got {}",
                    self.export,
                    params.len(),
                    params,
                    args.len()
                ),
            ));
        }
        let inputs = params
            .iter()
            .zip(args)
            .map(|(t, a)| parse(t, a))
            .collect::<Result<Vec<_>, _>>()?;
        let (mut store, instance) = self.instantiate()?;
        let func = instance.get_func(&store, &self.export).ok_or_else(|| {
            RemoteError::new(ErrorCode::InternalError, "the export is gone".to_owned())
        })?;
        let mut outputs: Vec<Val> = self
            .ty
            .results()
            .iter()
            .map(|t| Val::default_for_ty(*t))
            .collect();
        func.call(&mut store, &inputs, &mut outputs)
            .map_err(|e| run_error(&e))?;
        Ok(outputs.iter().map(show).collect::<Vec<_>>().join(" "))
    }

    /// As a named function of the handlers.
    pub fn into_function(self) -> nkcluster_core::handlers::FunctionFn {
        let f = Arc::new(self);
        Arc::new(move |args: &[String]| f.call(args))
    }
}

fn parse(t: &ValType, a: &str) -> Result<Val, RemoteError> {
    let bad = |e: &dyn std::fmt::Display| {
        RemoteError::new(
            ErrorCode::BadRequest,
            format!("argument {a:?} as {t:?}: {e}"),
        )
    };
    let a = a.trim();
    Ok(match t {
        ValType::I32 => Val::I32(
            a.parse::<i32>()
                .or_else(|_| a.parse::<u32>().map(|u| u as i32))
                .map_err(|e| bad(&e))?,
        ),
        ValType::I64 => Val::I64(
            a.parse::<i64>()
                .or_else(|_| a.parse::<u64>().map(|u| u as i64))
                .map_err(|e| bad(&e))?,
        ),
        ValType::F32 => Val::F32(wasmi::F32::from_float(
            a.parse::<f32>().map_err(|e| bad(&e))?,
        )),
        ValType::F64 => Val::F64(wasmi::F64::from_float(
            a.parse::<f64>().map_err(|e| bad(&e))?,
        )),
        other => return Err(bad(&format!("type {other:?} is not a number"))),
    })
}

fn show(v: &Val) -> String {
    match v {
        Val::I32(x) => x.to_string(),
        Val::I64(x) => x.to_string(),
        Val::F32(x) => x.to_float().to_string(),
        Val::F64(x) => x.to_float().to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(text: &str) -> Vec<u8> {
        wat::parse_str(text).expect("valid text")
    }

    fn config(fuel: u64) -> ModulesConfig {
        ModulesConfig {
            fuel_per_call: fuel,
            ..Default::default()
        }
    }

    fn code(r: Result<impl std::fmt::Debug, RemoteError>) -> String {
        match r {
            Ok(v) => format!("ok {v:?}"),
            Err(e) => e.code.as_str().to_owned(),
        }
    }

    const ADD: &str = r#"(module (func (export "add") (param i32 i32) (result i32)
        local.get 0 local.get 1 i32.add))"#;

    #[test]
    fn add_runs_with_its_arguments_parsed() {
        let e = engine();
        let f = compile(e, "add", &module(ADD), config(1_000_000)).expect("compiles");
        assert_eq!(f.export(), "add");
        assert_eq!(f.call(&["2".into(), "3".into()]), Ok("5".into()));
        assert_eq!(f.call(&["-2".into(), "3".into()]), Ok("1".into()));
        assert_eq!(code(f.call(&["2".into()])), "bad_request");
        assert_eq!(code(f.call(&["2".into(), "x".into()])), "bad_request");
        // The only export runs whatever the name.
        let g = compile(e, "plus", &module(ADD), config(1_000_000)).expect("compiles");
        assert_eq!(g.export(), "add");
    }

    #[test]
    fn loops_run_out_of_fuel_and_traps_say_why() {
        let e = engine();
        let spin = module(r#"(module (func (export "run") (loop (br 0))))"#);
        let f = compile(e, "spin", &spin, config(1_000_000)).expect("compiles");
        assert_eq!(code(f.call(&[])), "out_of_fuel");
        let div = module(
            r#"(module (func (export "run") (param i32) (result i32)
                i32.const 1 local.get 0 i32.div_s))"#,
        );
        let f = compile(e, "div", &div, config(1_000_000)).expect("compiles");
        assert_eq!(f.call(&["1".into()]), Ok("1".into()));
        let err = f.call(&["0".into()]).expect_err("traps");
        assert_eq!(err.code, ErrorCode::WasmTrap);
        assert!(err.message.contains("divi"), "{}", err.message);
    }

    #[test]
    fn bad_modules_are_invalid() {
        let e = engine();
        let c = config(1_000);
        assert_eq!(code(compile(e, "x", b"not wasm", c)), "invalid_module");
        let imports = module(r#"(module (import "env" "f" (func)) (func (export "run")))"#);
        assert_eq!(code(compile(e, "x", &imports, c)), "invalid_module");
        let two = module(r#"(module (func (export "a")) (func (export "b")))"#);
        assert_eq!(code(compile(e, "x", &two, c)), "invalid_module");
        assert_eq!(code(compile(e, "a", &two, c).map(|f| f.export)), "ok \"a\"");
        // 2 GiB of memory is over the cap; 1 page is not.
        let big = module(r#"(module (memory 32768) (func (export "run")))"#);
        assert_eq!(code(compile(e, "x", &big, c)), "invalid_module");
        let small = module(
            r#"(module (memory 1) (func (export "run") (result i32)
                i32.const 100000 memory.grow))"#,
        );
        let f = compile(e, "x", &small, c).expect("compiles");
        // Growing beyond 64 MiB fails the wasm way (-1), not the node.
        assert_eq!(f.call(&[]), Ok("-1".into()));
    }
}
