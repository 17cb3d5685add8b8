//! `zitadel.admin.v1.AdminService`: ZITADEL's three secret generator methods, each an adapter
//! over one use case of [`Service`], as the HTTP routes are. The messages are ZITADEL's (same
//! names and field numbers), with secretgen's extra fields numbered from 1001.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tonic::{Request, Response, Status};

use super::proto::zitadel::admin::v1::admin_service_server::AdminService;
use super::proto::zitadel::admin::v1::{
    GetSecretGeneratorRequest, GetSecretGeneratorResponse, ListSecretGeneratorsRequest,
    ListSecretGeneratorsResponse, UpdateSecretGeneratorRequest, UpdateSecretGeneratorResponse,
};
use super::proto::zitadel::settings::v1::{SecretGenerator, secret_generator_query::Query};
use super::proto::zitadel::v1::{ListDetails, ObjectDetails};
use super::{admit, generator_type, observe, status};
use crate::config::{ConfigDraft, Field, FieldViolation, floor_hundredths};
use crate::metrics::GrpcMethod;
use crate::registry::{InstanceId, Snapshot, Version};
use crate::service::{ReadGenerators, SearchQuery, Service, UpdateGenerator};

/// The AdminService over the use cases.
#[derive(Debug, Clone)]
pub struct Admin {
    service: Arc<Service>,
}

impl Admin {
    /// The AdminService of `service`.
    pub fn new(service: Arc<Service>) -> Admin {
        Admin { service }
    }
}

/// A timestamp as protobuf writes it.
pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

/// A duration as protobuf writes it (it fits: expiries are at most 31 days).
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
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
pub fn secret_generator(snapshot: &Snapshot, instance: &InstanceId) -> SecretGenerator {
    let c = snapshot.config();
    let d = c.to_draft();
    SecretGenerator {
        generator_type: i32::from(c.generator_type().number()),
        details: Some(details(snapshot.version(), instance)),
        length: c.length().get() as u32,
        expiry: Some(duration(c.expiry().duration())),
        include_lower_letters: d.include_lower_letters,
        include_upper_letters: d.include_upper_letters,
        include_digits: d.include_digits,
        include_symbols: d.include_symbols,
        exclude_ambiguous: d.exclude_ambiguous,
        require_each_class: d.require_each_class,
        entropy_bits: floor_hundredths(c.entropy_bits()),
    }
}

/// A `google.protobuf.Duration` as the protobuf JSON text the engine reads (`"-1.5s"`), or
/// why it is no duration: protobuf requires seconds and nanos of one sign, and nanos below a
/// second.
fn duration_text(d: &prost_types::Duration) -> Result<String, &'static str> {
    let (secs, nanos) = (d.seconds, d.nanos);
    if nanos.unsigned_abs() >= 1_000_000_000 || (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
        return Err(
            "must be a google.protobuf.Duration: seconds and nanos of one sign, \
                    and nanos between -999999999 and 999999999",
        );
    }
    let sign = if secs < 0 || nanos < 0 { "-" } else { "" };
    let (secs, nanos) = (secs.unsigned_abs(), nanos.unsigned_abs());
    Ok(if nanos == 0 {
        format!("{sign}{secs}s")
    } else {
        format!("{sign}{secs}.{nanos:09}s")
    })
}

/// An update request as the draft the use case checks: a field left out is its zero value.
/// A type that is UNSPECIFIED or unknown is one unreadable field among the others, so that
/// every violation is listed at once (SPEC section 4).
fn draft(request: &UpdateSecretGeneratorRequest) -> ConfigDraft {
    let mut draft = match request
        .generator_type
        .to_string()
        .parse::<crate::GeneratorType>()
    {
        Ok(t) => ConfigDraft::new(t),
        Err(e) => ConfigDraft::with_unreadable_type(e.to_string()),
    };
    draft.length = i64::from(request.length);
    if let Some(expiry) = &request.expiry {
        match duration_text(expiry) {
            Ok(text) => draft.expiry = text,
            Err(why) => draft.unreadable.push(FieldViolation {
                field: Field::Expiry,
                description: why.to_owned(),
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
        observe(service, GrpcMethod::ListSecretGenerators, &request, async {
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
        })
        .await
    }

    async fn get_secret_generator(
        &self,
        request: Request<GetSecretGeneratorRequest>,
    ) -> Result<Response<GetSecretGeneratorResponse>, Status> {
        let service = &self.service;
        observe(service, GrpcMethod::GetSecretGenerator, &request, async {
            let grant = admit::<ReadGenerators, _>(service, &request).await?;
            let t = generator_type(request.get_ref().generator_type).map_err(status::status)?;
            let snapshot = service.get(&grant, t);
            Ok(Response::new(GetSecretGeneratorResponse {
                secret_generator: Some(secret_generator(&snapshot, service.instance_id())),
            }))
        })
        .await
    }

    async fn update_secret_generator(
        &self,
        request: Request<UpdateSecretGeneratorRequest>,
    ) -> Result<Response<UpdateSecretGeneratorResponse>, Status> {
        let service = &self.service;
        observe(
            service,
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
    fn durations_become_the_text_the_engine_reads() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert_eq!(duration_text(&d(300, 0)).unwrap(), "300s");
        assert_eq!(duration_text(&d(1, 500_000_000)).unwrap(), "1.500000000s");
        assert_eq!(duration_text(&d(0, 0)).unwrap(), "0s");
        assert_eq!(duration_text(&d(-5, 0)).unwrap(), "-5s");
        assert_eq!(duration_text(&d(0, -1)).unwrap(), "-0.000000001s");
        assert_eq!(
            duration_text(&d(i64::MIN, 0)).unwrap(),
            "-9223372036854775808s"
        );
        assert!(duration_text(&d(1, -1)).is_err());
        assert!(duration_text(&d(-1, 1)).is_err());
        assert!(duration_text(&d(0, 1_000_000_000)).is_err());
        assert!(duration_text(&d(0, i32::MIN)).is_err());
        // What the engine makes of them.
        assert_eq!(
            crate::Expiry::parse(&duration_text(&d(1, 500_000_000)).unwrap())
                .unwrap()
                .duration(),
            Duration::from_millis(1500)
        );
    }
}
