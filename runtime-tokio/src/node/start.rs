//! Starting a node (listeners, identity, machines, background tasks) and its simple
//! getters.

use super::*;

impl<N: Net> Node<N> {
    /// A handle for the node's own tasks (they do not need the listen addresses).
    pub(super) fn from_inner(inner: Arc<Inner<N>>) -> Self {
        Node {
            inner,
            listen_addrs: Arc::new(Vec::new()),
        }
    }

    /// Starts a node: binds its listeners, then dials `cluster_addr` in the background.
    pub async fn start(config: NodeConfig, env: Env<N>) -> Result<Node<N>, StartError> {
        Self::start_with(config, env, None).await
    }

    /// Like [`start`](Self::start), with extra request handlers.
    pub async fn start_with(
        config: NodeConfig,
        env: Env<N>,
        handlers: Option<Handlers>,
    ) -> Result<Node<N>, StartError> {
        let mut rng = match env.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let clock = Clock::new(env.wall_origin_ns);
        let tls_crypto = transport::TlsCrypto {
            provider: env
                .tls_provider
                .clone()
                .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider())),
            time: match env.wall_origin_ns {
                Some(_) => Arc::new(TlsTime(clock)),
                None => Arc::new(rustls::time_provider::DefaultTimeProvider),
            },
        };
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        // One generated certificate serves every TLS listener without a configured one.
        let mut generated: Option<ServerTls> = None;
        for url in &config.listen {
            let addr = bind_addr(url).map_err(|error| StartError::Listen {
                url: url.remote_label(),
                error,
            })?;
            let tls = if url.transport.is_tls() {
                let opts = url.tls.over(&config.tls);
                let t = if opts.certfile.is_none() && generated.is_some() {
                    generated.clone()
                } else {
                    let t = transport::server_tls_with(&opts, &config.node_id, &tls_crypto)
                        .map_err(|e| StartError::Listen {
                            url: url.remote_label(),
                            error: e.to_string(),
                        })?;
                    if t.self_signed {
                        generated = Some(t.clone());
                    }
                    Some(t)
                };
                t.map(Arc::new)
            } else {
                None
            };
            let l = env.net.bind(addr).await.map_err(|e| StartError::Listen {
                url: url.remote_label(),
                error: e.to_string(),
            })?;
            let local = env.net.local_addr(&l).map_err(|e| StartError::Listen {
                url: url.remote_label(),
                error: e.to_string(),
            })?;
            bound.push((url.transport, local));
            listeners.push((url.clone(), l, local, tls));
        }
        let listen_urls = listeners
            .iter()
            .map(|(u, _, local, _)| {
                let mut u = u.clone();
                u.port = local.port();
                u.password = None;
                u.worker_password = None;
                u.tls = TlsOptions::default();
                u.to_string()
            })
            .collect();
        let identity = Identity {
            cluster: config.cluster_name.clone(),
            node_id: config.node_id.clone(),
            instance: rng.random(),
            role: if config.admin {
                Role::Admin
            } else if config.control {
                Role::Control
            } else {
                Role::Worker
            },
            listen: listen_urls,
            meta: config.meta.to_string(),
            partitions: if config.control && !config.admin {
                config.partitions
            } else {
                0
            },
        };
        let key = Key::derive(
            &config.password,
            &config.cluster_name,
            config.key_iterations,
        );
        let mut keys = HashMap::new();
        keys.insert(config.password.clone(), key);
        let handlers = handlers.unwrap_or_else(|| Handlers::builtin(&config.node_id));
        let (events_out, events_rx) = brain::OwnEvents::new();
        let mut machine = NodeMachine::new(NodeSettings {
            me: config.node_id.clone(),
            role: identity.role,
            listen: identity.listen.clone(),
            partitions: config.partitions,
            wall_origin_ns: clock.wall_origin_ns(),
            membership: nkcluster_core::membership::MembershipConfig {
                gossip_every: config.gossip_every,
                ring_settle: config.ring_settle,
                ..Default::default()
            },
            handoff_retry: config.connection.ping_interval,
            handoff: nkcluster_core::node::HandoffTimes {
                adopt: config.connection.connect_timeout + config.connection.handshake.timeout,
                probe: config.connection.idle_timeout,
                redirect: GATHER_TIMEOUT,
                identity: config.connection.handshake.timeout,
            },
            cluster_addr: config.cluster_addr.clone(),
            backoff: config.backoff.clone(),
            data_limit: DATA_LIMIT,
            meta: config.meta.clone(),
            workers: Default::default(),
            events: Default::default(),
            files_dir: config.files_dir.clone(),
            transfers: nkcluster_core::transfers::TransfersConfig {
                max_open: MAX_TRANSFERS,
                idle_expiry: config.transfer_idle,
            },
            outbox: nkcluster_core::outbox::OutboxConfig {
                max_events: config.event_buffer,
                max_bytes: EVENT_BUFFER_BYTES,
            },
            modules: config.modules,
        });
        // The dashboard's feed (a few outputs more, on changes only).
        machine.set_follow(true);
        let (brain, jobs) = Brain::new(&machine);
        let inner = Arc::new(Inner {
            connector_running: std::sync::atomic::AtomicBool::new(!config.cluster_addr.is_empty()),
            connector_interrupt: watch::channel(0).0,
            identity: identity.clone(),
            net: env.net,
            dns: std::sync::OnceLock::new(),
            clock,
            keys: Mutex::new(keys),
            rng: Mutex::new(rng),
            brain,
            next_conn_id: AtomicU64::new(1),
            events: event_feed::LazyBroadcast::new(EVENT_QUEUE),
            handlers,
            shutdown: watch::channel(false).0,
            fatal: watch::channel(None).0,
            client_tls: Mutex::new(HashMap::new()),
            tls_crypto,
            tasks: Mutex::new(HashMap::new()),
            events_out,
            job_events: event_feed::LazyBroadcast::new(EVENT_QUEUE),
            part_files: Mutex::default(),
            decided_file_ops: Mutex::default(),
            file_links: Mutex::new(HashMap::new()),
            file_writer: Mutex::new(None),
            sys: Mutex::new(sysinfo::System::new()),
            machine_figures: env.machine_figures,
            stats_cache: Mutex::new(None),
            running: watch::channel(0).0,
            admission: Arc::new(Mutex::new(Admission::new(config.admission))),
            log_limit: Mutex::new(nkcluster_core::loglimit::LogLimiter::new(
                REFUSAL_LOG_INTERVAL,
                REFUSAL_LOG_BURST,
                REFUSAL_LOG_SOURCES,
            )),
            following: dashboard::Following::new(),
            telemetry: Arc::new(nkcluster_core::telemetry::Telemetry::new()),
            config,
        });
        inner.prepare_client_tls();
        tokio::spawn(own_brain(Arc::downgrade(&inner), machine, jobs, clock));
        for (url, l, local, tls) in listeners {
            let label = format!("{}:{}", url.transport, local);
            info!(node = %inner.config.node_id, addr = %label, "listening");
            inner.emit(NodeEvent::Listening { addr: label });
            tokio::spawn(accept_loop(inner.clone(), l, url, tls));
        }
        // `launching` until here: the listeners are up.
        inner.tell(|b, now| b.start(now));
        if !inner.config.cluster_addr.is_empty() {
            tokio::spawn(connector(inner.clone()));
        }
        tokio::spawn(forward_events(inner.clone(), events_rx));
        tokio::spawn(report_info(inner.clone()));
        Ok(Node {
            inner,
            listen_addrs: Arc::new(bound),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// The addresses the listeners are bound to.
    pub fn listen_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.listen_addrs.to_vec()
    }

    /// Subscribes to node events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Control nodes: the alive members of the control cluster (ourselves included),
    /// sorted; empty on other nodes.
    pub fn members(&self) -> Vec<String> {
        self.inner.view().members().to_vec()
    }

    /// The node table of the whole cluster as this node can see it: its own links plus,
    /// on a control node, every control member's (asked over the mesh), and the members
    /// that did not answer.
    pub async fn cluster_nodes(&self) -> NodesReport {
        self.inner.cluster_rows().await
    }

    /// Authenticated links, by peer id.
    pub fn peers(&self) -> Vec<PeerSummary> {
        let view = self.inner.view();
        view.links()
            .iter()
            .map(|(_, l)| l.summary.clone())
            .collect()
    }
}
