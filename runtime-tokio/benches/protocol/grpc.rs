//! tonic unary gRPC over plaintext HTTP/2 on loopback, as a user of tonic would run it
//! (a `Server` with one service, a `Channel` shared by the callers), without codegen:
//! the message is a hand-written prost struct, the service and the client call tonic's
//! generic `server::Grpc` / `client::Grpc` with the prost codec.

use std::convert::Infallible;
use std::future::{Ready, ready};

use bytes::Bytes;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::server::{NamedService, UnaryService};
use tonic::transport::{Channel, Endpoint, Server, server::TcpIncoming};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::drive::Echo;

/// `message Echo { bytes body = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoMsg {
    /// The payload, returned as it came.
    #[prost(bytes = "bytes", tag = "1")]
    pub body: Bytes,
}

const METHOD: &str = "/bench.Echo/Echo";

/// The server side: `service Echo { rpc Echo(Echo) returns (Echo); }`.
#[derive(Clone)]
struct EchoService;

impl NamedService for EchoService {
    const NAME: &'static str = "bench.Echo";
}

/// The method's handler: the request message is the reply.
struct EchoMethod;

impl UnaryService<EchoMsg> for EchoMethod {
    type Response = EchoMsg;
    type Future = Ready<Result<Response<EchoMsg>, Status>>;

    fn call(&mut self, request: Request<EchoMsg>) -> Self::Future {
        ready(Ok(Response::new(request.into_inner())))
    }
}

impl Service<http::Request<tonic::body::Body>> for EchoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() != METHOD {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoMsg, EchoMsg>::default());
            Ok(grpc.unary(EchoMethod, req).await)
        })
    }
}

/// A caller's handle: a clone of one `Channel` (one HTTP/2 connection).
#[derive(Clone)]
pub struct Grpc {
    client: tonic::client::Grpc<Channel>,
}

impl Grpc {
    /// Starts the server on a loopback port and connects a channel to it.
    pub async fn start() -> Grpc {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let incoming = TcpIncoming::from(l).with_nodelay(Some(true));
        tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(EchoService)
                .serve_with_incoming(incoming)
                .await;
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect");
        Grpc {
            client: tonic::client::Grpc::new(channel),
        }
    }
}

impl Echo for Grpc {
    async fn echo(&mut self, body: Bytes) {
        self.client.ready().await.expect("ready");
        let reply = self
            .client
            .unary(
                Request::new(EchoMsg { body }),
                PathAndQuery::from_static(METHOD),
                ProstCodec::<EchoMsg, EchoMsg>::default(),
            )
            .await
            .expect("reply");
        std::hint::black_box(reply);
    }
}
