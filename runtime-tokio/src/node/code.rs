//! Performing a load of code over the wire (`nkcluster.load`): the machine checks it,
//! the blocking pool validates and compiles it ([`crate::wasm`]), the machine commits it
//! (its version) and the handlers serve it from the next call on. Each load, accepted or
//! refused, is logged with who asked.

use super::*;
use nkcluster_core::modules::LoadRequest;
use sha2::Digest;

impl<N: Net> Inner<N> {
    /// Loads `req` for `by` (the peer, its role and the origin it claims) and answers a
    /// [`LoadReply`](nkcluster_core::modules::LoadReply).
    pub(super) fn load_module(
        self: &Arc<Self>,
        b: &mut NodeMachine<Pump>,
        req: LoadRequest,
        by: String,
        responder: Responder,
    ) {
        let me = self.config.node_id.clone();
        let code_function = self.handlers.is_code_function(&req.name);
        if let Err(e) = b.check_module(&req.name, req.module.len(), code_function) {
            // The name is not checked yet: quoted.
            warn!(node = %me, module = ?req.name, by = %by, code = %e.code, "module refused: {}", e.message);
            responder.reply(Err(e));
            return;
        }
        let config = b.modules_config();
        let inner = self.clone();
        tokio::spawn(async move {
            let name = req.name.clone();
            let size = req.module.len();
            let compiled = tokio::task::spawn_blocking(move || {
                let sha: String = sha2::Sha256::digest(&req.module)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                crate::wasm::compile(crate::wasm::engine(), &req.name, &req.module, config)
                    .map(|f| (f, sha))
            })
            .await
            .unwrap_or_else(|e| Err(RemoteError::new(ErrorCode::InternalError, e.to_string())));
            let (f, sha) = match compiled {
                Ok(c) => c,
                Err(e) => {
                    warn!(node = %me, module = %name, by = %by, code = %e.code, "module refused: {}", e.message);
                    responder.reply(Err(e));
                    return;
                }
            };
            let handlers = inner.handlers.clone();
            let export = f.export().to_owned();
            let loaded_by = by.clone();
            let committed = inner
                .ask(move |b, _| {
                    let r = b.commit_module(&name, size, sha, export, loaded_by);
                    if r.is_ok() {
                        handlers.set_loaded_function(&name, f.into_function());
                    }
                    r
                })
                .await;
            let r = match committed {
                None => Err(stopped()),
                Some(Err(e)) => {
                    warn!(node = %me, by = %by, code = %e.code, "module refused: {}", e.message);
                    Err(e)
                }
                Some(Ok(reply)) => {
                    let m = &reply.module;
                    info!(
                        node = %me, module = %m.name, version = m.version, size = m.size,
                        export = %m.export, sha256 = %m.sha256, by = %by,
                        replaced = ?reply.replaced, "module loaded"
                    );
                    encode_answer(&reply)
                }
            };
            responder.reply(r);
        });
    }
}
