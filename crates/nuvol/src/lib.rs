//! The `nuvol` binary's one list of components. The binary runs it; tests
//! and embedders add their own with one more `.with::<C>()`.

use nuvol_agent::AgentBuilder;

/// Every component of the agent, in start order: RPC first (so the CLI
/// reaches a starting agent), event handlers, health checks, the catalog and what builds
/// on it, the REST API, metrics, reload, and joining last (so a node joins
/// once its catalog is ready). A new capability is one line here.
pub fn components() -> AgentBuilder {
    use nuvol_agent::components::{Handlers, Join, Metrics, Reload, RpcServer};
    AgentBuilder::new()
        .with::<RpcServer>()
        .with::<Handlers>()
        .with::<nuvol_checks::ChecksComponent>()
        .with::<nuvol_catalog::component::CatalogComponent>()
        .with::<nuvol_dns::Dns>()
        .with::<nuvol_mdns::component::MdnsComponent>()
        .with::<nuvol_api::Api>()
        .with::<nuvol_dashboard::Dashboard>()
        .with::<nuvol_apps::Apps>()
        .with::<nuvol_vip::Vips>()
        .with::<nuvol_sync::Sync>()
        .with::<nuvol_swarm::Swarm>()
        .with::<nuvol_monitor::MonitorComponent>()
        .with::<Metrics>()
        .with::<Reload>()
        .with::<Join>()
}
