//! The comparison: the same echo over tonic (gRPC, HTTP/2 over TCP + rustls with the ring provider,
//! mutual TLS with the same certificates), with a hand-written codec instead of prost.

use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use swarm_net::pki::bundle::to_pem;
use swarm_net::pki::TlsMaterial;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::Status;

const PATH: &str = "/bench.Echo/Echo";

/// Bytes in, bytes out: what prost would do for a `bytes` field, without prost.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// The echo service, as tonic's code generator would write it.
#[derive(Debug, Clone, Copy)]
struct EchoServer;

#[derive(Debug, Clone, Copy)]
struct EchoMethod;

impl tonic::server::UnaryService<Vec<u8>> for EchoMethod {
    type Response = Vec<u8>;
    type Future = BoxFuture<tonic::Response<Vec<u8>>, Status>;
    fn call(&mut self, request: tonic::Request<Vec<u8>>) -> Self::Future {
        Box::pin(async move { Ok(tonic::Response::new(request.into_inner())) })
    }
}

impl<B> Service<http::Request<B>> for EchoServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == PATH {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(RawCodec);
                Ok(grpc.unary(EchoMethod, req).await)
            })
        } else {
            Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) })
        }
    }
}

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = "bench.Echo";
}

fn key_pem(material: &TlsMaterial) -> String {
    rcgen::KeyPair::try_from(material.key().pkcs8_der())
        .expect("a P-256 PKCS#8 key")
        .serialize_pem()
}

fn identity(material: &TlsMaterial) -> Identity {
    Identity::from_pem(to_pem(material.chain()), key_pem(material))
}

/// Serves the echo on 127.0.0.1 (any port) with mutual TLS; returns the address.
pub async fn serve(material: &TlsMaterial) -> SocketAddr {
    let tls = ServerTlsConfig::new()
        .identity(identity(material))
        .client_ca_root(Certificate::from_pem(to_pem(material.roots())));
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind tcp")
            .with_nodelay(Some(true));
    let addr = incoming.local_addr().expect("local addr");
    let router = tonic::transport::Server::builder()
        .tls_config(tls)
        .expect("server tls")
        .add_service(EchoServer);
    tokio::spawn(async move {
        let _ = router.serve_with_incoming(incoming).await;
    });
    addr
}

/// A channel (one HTTP/2 connection) to `addr`, presenting `material`.
pub async fn connect(addr: SocketAddr, material: &TlsMaterial) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(to_pem(material.roots())))
        .identity(identity(material))
        .domain_name("swarm-manager");
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("client tls")
        .connect()
        .await
        .expect("connect")
}

pub async fn call(channel: &Channel, payload: &[u8]) {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let got = grpc
        .unary(
            tonic::Request::new(payload.to_vec()),
            http::uri::PathAndQuery::from_static(PATH),
            RawCodec,
        )
        .await
        .expect("echo call");
    assert_eq!(got.into_inner().len(), payload.len());
}
