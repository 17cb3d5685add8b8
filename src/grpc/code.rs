//! `secretgen.v1.CodeService`: the data plane over gRPC. `Generate` is `_generate`;
//! `GenerateStream` sends up to [`MAX_STREAM_COUNT`] codes in chunks made only as the client
//! takes them (HTTP/2 flow control holds the stream back, and the next chunk is made when the
//! last one has gone), so a slow reader costs the server a chunk or two, not the stream.
//! `Issue` and `Verify` are `_issue` and `_verify` (SPEC section 12), with the same fields,
//! permissions and results.
//!
//! [`MAX_STREAM_COUNT`]: secretgen_core::service::MAX_STREAM_COUNT

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::admin::timestamp;
use super::metrics::{GrpcMethod, GrpcMetrics};
use super::proto::secretgen::v1::code_service_server::CodeService;
use super::proto::secretgen::v1::{
    Code, CodeChunk, GenerateRequest, GenerateResponse, GenerateStreamRequest, IssueRequest,
    IssueResponse, VerifyRequest, VerifyResponse, VerifyResult as WireResult,
};
use super::{admit, generator_type, observe, status};
use secretgen_core::service::{
    Codes, GenerateCodes, IssueCodes, IssuedCode, Service, Verification, VerifyCodes,
};

/// The CodeService over the use cases.
#[derive(Debug, Clone)]
pub struct CodeServer {
    service: Arc<Service>,
    metrics: Arc<GrpcMetrics>,
}

impl CodeServer {
    /// The CodeService of `service`, its calls counted in `metrics`.
    pub fn new(service: Arc<Service>, metrics: Arc<GrpcMetrics>) -> CodeServer {
        CodeServer { service, metrics }
    }
}

/// A chunk of a stream: the codes handed over without a copy (zeroed when dropped).
fn chunk(codes: Codes) -> CodeChunk {
    CodeChunk {
        generator_type: i32::from(codes.generator_type.number()),
        sequence: codes.sequence,
        length: codes.length as u32,
        expires_at: codes.expires_at.map(timestamp),
        codes: codes.into_bytes(),
    }
}

/// The protobuf value of a verification's result, by the name the core gives it (the core
/// is imported here only through its use cases; the test below checks that every result has
/// its value).
fn wire_result(verification: &Verification) -> WireResult {
    WireResult::from_str_name(verification.result.name()).unwrap_or(WireResult::Unspecified)
}

/// The answer to an `Issue`. The code is copied into a plain `String`, as `Generate`'s codes
/// are: prost's messages hold no zeroing type, so this copy, and the buffer tonic encodes the
/// message into, are freed without being zeroed (the `IssuedCode`'s own is zeroed on drop).
fn issued(issued: &IssuedCode) -> IssueResponse {
    IssueResponse {
        id: issued.id.clone(),
        code: issued.code.expose().to_owned(),
        expires_at: Some(timestamp(issued.expires_at)),
        sequence: issued.sequence,
        attempts_left: issued.attempts_left,
    }
}

/// The answer to a `Verify`.
fn verified(verification: Verification) -> VerifyResponse {
    VerifyResponse {
        result: wire_result(&verification) as i32,
        attempts_left: verification.attempts_left,
    }
}

/// The chunks of a stream, as tonic sends them.
type ChunkStream = Pin<Box<dyn Stream<Item = Result<CodeChunk, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl CodeService for CodeServer {
    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        let service = &self.service;
        observe(&self.metrics, GrpcMethod::Generate, &request, async {
            let grant = admit::<GenerateCodes, _>(service, &request).await?;
            let r = request.get_ref();
            let t = generator_type(r.generator_type).map_err(status::status)?;
            let count = r.count.map_or(1, i128::from);
            let codes = service.generate(&grant, t, count).map_err(status::status)?;
            let expires_at = codes.expires_at.map(timestamp);
            Ok(Response::new(GenerateResponse {
                generator_type: i32::from(t.number()),
                sequence: codes.sequence,
                codes: codes
                    .iter()
                    .map(|code| Code {
                        // Codes are ASCII (every alphabet is).
                        code: String::from_utf8_lossy(code).into_owned(),
                        expires_at,
                    })
                    .collect(),
            }))
        })
        .await
    }

    type GenerateStreamStream = ChunkStream;

    async fn generate_stream(
        &self,
        request: Request<GenerateStreamRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let service = &self.service;
        observe(&self.metrics, GrpcMethod::GenerateStream, &request, async {
            let grant = admit::<GenerateCodes, _>(service, &request).await?;
            let r = request.get_ref();
            let t = generator_type(r.generator_type).map_err(status::status)?;
            let codes = service
                .generate_stream(&grant, t, r.count)
                .map_err(status::status)?;
            // tokio_stream::iter makes each chunk when tonic asks for the next message,
            // which it does only once the last has been written out.
            let chunks = tokio_stream::iter(codes.map(|c| c.map(chunk).map_err(status::status)));
            Ok(Response::new(Box::pin(chunks) as ChunkStream))
        })
        .await
    }

    async fn issue(
        &self,
        request: Request<IssueRequest>,
    ) -> Result<Response<IssueResponse>, Status> {
        let service = &self.service;
        observe(&self.metrics, GrpcMethod::Issue, &request, async {
            let grant = admit::<IssueCodes, _>(service, &request).await?;
            let r = request.get_ref();
            let t = generator_type(r.generator_type).map_err(status::status)?;
            let code = service
                .issue(&grant, t, &r.subject)
                .await
                .map_err(status::status)?;
            Ok(Response::new(issued(&code)))
        })
        .await
    }

    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let service = &self.service;
        observe(&self.metrics, GrpcMethod::Verify, &request, async {
            let grant = admit::<VerifyCodes, _>(service, &request).await?;
            let r = request.get_ref();
            let t = generator_type(r.generator_type).map_err(status::status)?;
            // The typed code arrives in the `String` tonic decoded it into, freed unzeroed
            // with the request; the core's copy of it (`TypedCode`) is zeroed.
            let verification = service
                .verify(&grant, t, &r.subject, &r.code)
                .await
                .map_err(status::status)?;
            Ok(Response::new(verified(verification)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretgen_core::verification::VerifyResult;

    /// Every result of the core has its protobuf value, numbered in the order of
    /// `VerifyResult::ALL` (1 to 5).
    #[test]
    fn each_result_has_its_protobuf_name_and_number() {
        for (i, result) in VerifyResult::ALL.into_iter().enumerate() {
            let wire = wire_result(&Verification {
                result,
                attempts_left: 0,
            });
            assert_eq!(wire as usize, i + 1, "{result}");
            assert_eq!(wire.as_str_name(), result.name());
        }
    }
}
