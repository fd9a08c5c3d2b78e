//! The OpenAPI document (`GET /openapi.json`), generated from the wire types
//! (`cairn_protocol::vmm`, `ToSchema`) and the handlers' `#[utoipa::path]` attributes.
//! A test checks that its paths and methods are exactly the router's.

use cairn_protocol::api::{ErrorBody, ErrorDetail};
use cairn_protocol::vmm::{
    AppCvm, AppList, AppStatus, CheckOutcome, CheckStatus, CreateCvmRequest, CvmInfo, CvmList,
    CvmState, CvmSummary, GuestEvent, ImageInfo, ImageKind, ImageList, PortMapping, PortRequest,
    PreflightCheck, PreflightReport, UpgradeRequest, UpgradeState, UpgradeStatus,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::handlers;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn VMM API",
        description = "Runs CVMs on one host after asking the chain. JSON over HTTP on a unix \
socket or TCP (a bearer token is required on TCP when configured). Byte strings are 0x hex; \
errors are {\"error\":{\"code\",\"message\"}}. See docs/vmm.md."
    ),
    paths(
        handlers::list,
        handlers::create,
        handlers::status,
        handlers::remove,
        handlers::start,
        handlers::stop,
        handlers::restart,
        handlers::upgrade,
        handlers::logs,
        handlers::images,
        handlers::apps,
        handlers::app,
        handlers::openapi_json,
        handlers::healthz,
        handlers::metrics,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, CreateCvmRequest, UpgradeRequest, PortRequest, PortMapping,
        CvmState, CvmSummary, CvmInfo, CvmList, GuestEvent, UpgradeState, UpgradeStatus,
        PreflightCheck, CheckStatus, CheckOutcome, PreflightReport, AppCvm, AppStatus, AppList,
        ImageKind, ImageInfo, ImageList,
    )),
    modifiers(&BearerAuth),
    security((), ("bearer" = [])),
)]
struct ApiDoc;

/// The OpenAPI document of the VMM API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
