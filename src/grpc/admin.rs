//! `zitadel.admin.v1.AdminService`: ZITADEL's three secret generator methods, each an adapter
//! over one use case of [`Service`], as the HTTP routes are. The messages are ZITADEL's (same
//! names and field numbers), with secretgen's extra fields numbered from 1001.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tonic::{Request, Response, Status};

use super::metrics::{GrpcMethod, GrpcMetrics};
use super::proto::zitadel::admin::v1::admin_service_server::AdminService;
use super::proto::zitadel::admin::v1::{
    GetSecretGeneratorRequest, GetSecretGeneratorResponse, ListSecretGeneratorsRequest,
    ListSecretGeneratorsResponse, UpdateSecretGeneratorRequest, UpdateSecretGeneratorResponse,
};
use super::proto::zitadel::settings::v1::{SecretGenerator, secret_generator_query::Query};
use super::proto::zitadel::v1::{ListDetails, ObjectDetails};
use super::{admit, generator_type, observe, status};
use secretgen_core::service::{
    GeneratorView, ReadGenerators, SearchQuery, Service, UpdateGenerator,
};
use secretgen_engine::config::{CodeLength, ConfigDraft, Field, FieldViolation, floor_hundredths};
use secretgen_engine::expiry::{Expiry, ExpiryError};
use secretgen_engine::registry::{InstanceId, Version};

/// The AdminService over the use cases.
#[derive(Debug, Clone)]
pub struct Admin {
    service: Arc<Service>,
    metrics: Arc<GrpcMetrics>,
}

impl Admin {
    /// The AdminService of `service`, its calls counted in `metrics`.
    pub fn new(service: Arc<Service>, metrics: Arc<GrpcMetrics>) -> Admin {
        Admin { service, metrics }
    }
}

/// A timestamp as protobuf writes it.
pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

/// An expiry as protobuf writes it (it fits: expiries are at most 31 days).
fn duration(expiry: Expiry) -> prost_types::Duration {
    prost_types::Duration::try_from(expiry.duration()).expect("31 days fit in a Duration")
}

/// Why a `google.protobuf.Duration` is none: protobuf requires seconds and nanos of one sign,
/// and nanos below a second.
const NOT_A_DURATION: &str = "must be a google.protobuf.Duration: seconds and nanos of one \
                              sign, and nanos between -999999999 and 999999999";

/// A `google.protobuf.Duration` as the engine's expiry, converted once: `None` when it is no
/// duration at all ([`NOT_A_DURATION`]), else the expiry or why it is none (negative, too
/// long, too short).
fn expiry(d: &prost_types::Duration) -> Option<Result<Expiry, ExpiryError>> {
    let (secs, nanos) = (d.seconds, d.nanos);
    if nanos.unsigned_abs() >= 1_000_000_000 || (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
        return None;
    }
    let negative = secs < 0 || nanos < 0;
    let magnitude = Duration::new(secs.unsigned_abs(), nanos.unsigned_abs());
    Some(Expiry::signed(negative, magnitude))
}

/// `details` of a generator (or of any event) in `instance`.
pub fn details(version: Version, instance: &InstanceId) -> ObjectDetails {
    ObjectDetails {
        sequence: version.sequence,
        creation_date: Some(timestamp(version.creation_date)),
        change_date: Some(timestamp(version.change_date)),
        resource_owner: instance.to_string(),
    }
}

/// The generator of `snapshot`, in `instance`.
pub fn secret_generator(snapshot: &GeneratorView, instance: &InstanceId) -> SecretGenerator {
    let c = snapshot.config();
    let d = c.to_draft();
    SecretGenerator {
        generator_type: i32::from(c.generator_type().number()),
        details: Some(details(snapshot.version(), instance)),
        length: c.length().get() as u32,
        expiry: Some(duration(c.expiry())),
        include_lower_letters: d.include_lower_letters,
        include_upper_letters: d.include_upper_letters,
        include_digits: d.include_digits,
        include_symbols: d.include_symbols,
        exclude_ambiguous: d.exclude_ambiguous,
        require_each_class: d.require_each_class,
        entropy_bits: floor_hundredths(c.entropy_bits()),
    }
}

/// An update request as the draft the use case checks: a field left out is its zero value.
/// A type that is UNSPECIFIED or unknown is one unreadable field among the others, so that
/// every violation is listed at once (SPEC section 4).
fn draft(request: &UpdateSecretGeneratorRequest) -> ConfigDraft {
    let mut draft = match request
        .generator_type
        .to_string()
        .parse::<secretgen_engine::GeneratorType>()
    {
        Ok(t) => ConfigDraft::new(t),
        Err(e) => ConfigDraft::with_unreadable_type(e.to_string()),
    };
    draft.length = CodeLength::new(request.length);
    if let Some(d) = &request.expiry {
        match expiry(d) {
            Some(expiry) => draft.expiry = expiry,
            None => draft.unreadable.push(FieldViolation {
                field: Field::Expiry,
                description: NOT_A_DURATION.to_owned(),
            }),
        }
    }
    draft.include_lower_letters = request.include_lower_letters;
    draft.include_upper_letters = request.include_upper_letters;
    draft.include_digits = request.include_digits;
    draft.include_symbols = request.include_symbols;
    draft.exclude_ambiguous = request.exclude_ambiguous;
    draft.require_each_class = request.require_each_class;
    draft
}

/// A list request as the search the use case runs. Paging as ZITADEL's `ListQuery`; without a
/// `query`, ascending by type number.
fn search(request: &ListSecretGeneratorsRequest) -> Result<SearchQuery, Status> {
    let mut search = SearchQuery::default();
    if let Some(query) = &request.query {
        search.offset = query.offset;
        search.limit = u64::from(query.limit);
        search.ascending = query.asc;
    }
    let mut violations = Vec::new();
    for (i, q) in request.queries.iter().enumerate() {
        match &q.query {
            Some(Query::TypeQuery(type_query)) => match generator_type(type_query.generator_type) {
                Ok(t) => search.narrow(t),
                Err(e) => violations.push((
                    format!("queries[{i}].type_query.generator_type"),
                    e.to_string(),
                )),
            },
            None => violations.push((format!("queries[{i}]"), "must hold a type_query".to_owned())),
        }
    }
    if violations.is_empty() {
        Ok(search)
    } else {
        Err(status::invalid("invalid search request", violations))
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn list_secret_generators(
        &self,
        request: Request<ListSecretGeneratorsRequest>,
    ) -> Result<Response<ListSecretGeneratorsResponse>, Status> {
        let service = &self.service;
        observe(
            &self.metrics,
            GrpcMethod::ListSecretGenerators,
            &request,
            async {
                let grant = admit::<ReadGenerators, _>(service, &request).await?;
                let query = search(request.get_ref())?;
                let found = service.search(&grant, &query);
                let instance = service.instance_id();
                Ok(Response::new(ListSecretGeneratorsResponse {
                    details: Some(ListDetails {
                        total_result: found.total,
                        processed_sequence: found.processed_sequence,
                        view_timestamp: Some(timestamp(found.view_timestamp)),
                    }),
                    result: found
                        .generators
                        .iter()
                        .map(|s| secret_generator(s, instance))
                        .collect(),
                }))
            },
        )
        .await
    }

    async fn get_secret_generator(
        &self,
        request: Request<GetSecretGeneratorRequest>,
    ) -> Result<Response<GetSecretGeneratorResponse>, Status> {
        let service = &self.service;
        observe(
            &self.metrics,
            GrpcMethod::GetSecretGenerator,
            &request,
            async {
                let grant = admit::<ReadGenerators, _>(service, &request).await?;
                let t = generator_type(request.get_ref().generator_type).map_err(status::status)?;
                let snapshot = service.get(&grant, t);
                Ok(Response::new(GetSecretGeneratorResponse {
                    secret_generator: Some(secret_generator(&snapshot, service.instance_id())),
                }))
            },
        )
        .await
    }

    async fn update_secret_generator(
        &self,
        request: Request<UpdateSecretGeneratorRequest>,
    ) -> Result<Response<UpdateSecretGeneratorResponse>, Status> {
        let service = &self.service;
        observe(
            &self.metrics,
            GrpcMethod::UpdateSecretGenerator,
            &request,
            async {
                let grant = admit::<UpdateGenerator, _>(service, &request).await?;
                let snapshot = service
                    .update(&grant, draft(request.get_ref()))
                    .await
                    .map_err(status::status)?;
                Ok(Response::new(UpdateSecretGeneratorResponse {
                    details: Some(details(snapshot.version(), service.instance_id())),
                }))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_expiries_once() {
        use ExpiryError::*;
        let d = |seconds, nanos| expiry(&prost_types::Duration { seconds, nanos });
        let ok = |secs, nanos| Some(Expiry::new(Duration::new(secs, nanos)));
        assert_eq!(d(300, 0), ok(300, 0));
        assert_eq!(d(1, 500_000_000), ok(1, 500_000_000));
        assert_eq!(d(0, 0), Some(Ok(Expiry::NEVER)));
        assert_eq!(d(-5, 0), Some(Err(Negative)));
        assert_eq!(d(0, -1), Some(Err(Negative)));
        assert_eq!(d(i64::MIN, 0), Some(Err(Negative)));
        assert_eq!(d(i64::MAX, 999_999_999), Some(Err(TooLong)));
        assert_eq!(d(0, 999_999_999), Some(Err(TooShort)));
        assert_eq!(d(1, -1), None);
        assert_eq!(d(-1, 1), None);
        assert_eq!(d(0, 1_000_000_000), None);
        assert_eq!(d(0, i32::MIN), None);
        // And back, as protobuf writes them.
        let e = Expiry::new(Duration::from_millis(1500)).unwrap();
        assert_eq!(
            duration(e),
            prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            }
        );
        assert_eq!(duration(Expiry::NEVER), prost_types::Duration::default());
    }
}
