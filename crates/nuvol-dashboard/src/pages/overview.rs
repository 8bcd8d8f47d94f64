//! `/`: this node, the cluster at a glance, recent events (live).

use super::events::event_row;
use crate::i18n::{Lang, T};
use crate::page::{layout, status_badge, Nav};
use crate::state::Dash;
use crate::sys::{human_bytes, human_duration};
use crate::web::{html, Viewer};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use nuvol_sync::plan::AppPlace;
use nuvol_sync::{SyncHandle, SyncStatus};
use nuvol_vip::component::{parse_tag, RemoteVip, VipsHandle, TAG as VIP_TAG};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Services by health, as the overview counts them.
pub fn count_services(dash: &Dash) -> BTreeMap<&'static str, usize> {
    let mut m: BTreeMap<&'static str, usize> = ["passing", "warning", "critical", "unavailable"]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
    if let Some(c) = &dash.catalog {
        for e in c.entries(&Default::default()) {
            *m.entry(e.status.as_str()).or_insert(0) += 1;
        }
    }
    m
}

/// How full: a native `<progress>` (no inline style, which the page's
/// CSP forbids), labelled with the figure it repeats.
fn meter(label: &str, used: u64, total: u64) -> Markup {
    let pct = used
        .saturating_mul(100)
        .checked_div(total)
        .unwrap_or(0)
        .min(100);
    html! { progress class="meter" max="100" value=(pct) aria-label={ (label) " " (pct) "%" } { (pct) "%" } }
}

fn counts(l: Lang, id_prefix: &str, m: &BTreeMap<&'static str, usize>) -> Markup {
    html! {
        ul class="counts" {
            @for (k, n) in m {
                li { (status_badge(l, k)) " " span id={ (id_prefix) "-" (k) } { (n) } }
            }
        }
    }
}

pub async fn page(State(dash): State<Arc<Dash>>, Viewer(req): Viewer) -> Response {
    if let Some(r) = super::reject_unknown(&req, &[]) {
        return r;
    }
    let l = req.lang;
    let members = match dash.cluster.members().await {
        Ok(m) => m,
        Err(e) => return super::unavailable(&req, e),
    };
    let me = members.iter().find(|m| m.name == dash.node_name);
    let stats = {
        let d = dash.clone();
        tokio::task::spawn_blocking(move || d.cpu_sample())
            .await
            .unwrap_or_default()
    };
    let unknown = T::Unknown.get(l);
    let by_status = Dash::count_members(&members);
    let by_health = count_services(&dash);
    let events = dash.recent(10);
    // Replicated folders, when this node has sync on.
    let sync = dash
        .registry
        .get()
        .and_then(|r| r.get::<SyncHandle>())
        .map(|h| h.status());
    // Every node's floating IPs, from their `vip` tags; this node's from
    // its own state, with the reason when it cannot claim.
    let mut vips: Vec<RemoteVip> = members
        .iter()
        .filter(|m| m.name != dash.node_name && m.status == nuvol_gossip::MemberStatus::Alive)
        .filter_map(|m| m.tags.get(VIP_TAG).map(|t| parse_tag(&m.name, t)))
        .flatten()
        .collect();
    let local_vips = dash
        .registry
        .get()
        .and_then(|r| r.get::<VipsHandle>())
        .map(|h| h.local())
        .unwrap_or_default();
    let mut reasons = BTreeMap::new();
    for v in &local_vips {
        let address = v.address.split('/').next().unwrap_or("").to_owned();
        if let Some(r) = &v.reason {
            reasons.insert((address.clone(), v.vrid), r.clone());
        }
        vips.push(RemoteVip {
            node: dash.node_name.clone(),
            address,
            vrid: v.vrid,
            state: v.state,
        });
    }
    vips.sort_by(|a, b| (&a.address, a.vrid, &a.node).cmp(&(&b.address, b.vrid, &b.node)));
    let body = html! {
        div class="grid" {
            section class="card" {
                h2 id="h-node" { (T::ThisNode.get(l)) }
                dl class="kv" {
                    dt { (T::Name.get(l)) } dd { (dash.node_name) }
                    dt { (T::Address.get(l)) } dd { (dash.cluster.advertise()) }
                    dt { (T::Uptime.get(l)) } dd {
                        (human_duration(dash.started.elapsed()))
                        @if let Some(u) = stats.uptime { span class="muted" { " (" (T::Board.get(l)) " " (human_duration(u)) ")" } }
                    }
                    dt { (T::Version.get(l)) } dd { (dash.version) }
                    dt { (T::Load.get(l)) } dd {
                        @match stats.load { Some([a, b, c]) => { (format!("{a:.2} {b:.2} {c:.2}")) }, None => (unknown) }
                        @if let Some(n) = stats.cpus { span class="muted" { " (" (n) " CPU)" } }
                    }
                    dt { (T::Cpu.get(l)) } dd id="stat-cpu" {
                        @match stats.cpu_percent { Some(p) => { (format!("{p:.0}%")) }, None => span class="muted" { "–" } }
                    }
                    dt { (T::Memory.get(l)) } dd {
                        @match (stats.mem_total, stats.mem_available) {
                            (Some(t), Some(a)) => {
                                (human_bytes(t.saturating_sub(a))) " " (T::Of.get(l)) " " (human_bytes(t))
                                (meter(T::Memory.get(l), t.saturating_sub(a), t))
                            }
                            _ => (unknown),
                        }
                    }
                    dt { (T::Disk.get(l)) } dd {
                        @match (stats.disk_total, stats.disk_available) {
                            (Some(t), Some(a)) => {
                                (human_bytes(a)) " " (T::Free.get(l)) " " (T::Of.get(l)) " " (human_bytes(t))
                                (meter(T::Disk.get(l), t.saturating_sub(a), t))
                            }
                            _ => (unknown),
                        }
                    }
                    @if let Some(c) = stats.temperature_c {
                        dt { (T::Temperature.get(l)) } dd { (format!("{c:.1} °C")) }
                    }
                    @if let Some(m) = &stats.model {
                        dt { (T::Board.get(l)) } dd { (m) " · " (stats.arch) }
                    }
                    @if let Some(me) = me {
                        dt { (T::Tags.get(l)) } dd { (me.tags.len()) }
                    }
                }
            }
            section class="card" {
                h2 id="h-cluster" { (T::Cluster.get(l)) }
                h3 { a href="/nodes" { (T::Members.get(l)) } " (" span id="count-members" { (members.len()) } ")" }
                (counts(l, "count", &by_status))
                h3 { a href="/services" { (T::Services.get(l)) } }
                (counts(l, "svc", &by_health))
            }
        }
        @if !vips.is_empty() {
            (vip_card(l, &vips, &reasons, &dash.node_name))
        }
        @if let Some(sync) = &sync {
            (sync_card(l, sync))
        }
        section {
            h2 id="h-events" { (T::RecentEvents.get(l)) }
            (event_table(l, &events, 10))
            p { a href="/events" { (T::AllEvents.get(l)) } }
        }
    };
    html(
        StatusCode::OK,
        layout(
            &req,
            T::Overview.get(l),
            Nav::Overview,
            Some("/live?page=overview"),
            body,
        ),
    )
}

/// The events table, newest first, live (`max` rows kept).
pub fn event_table(l: Lang, events: &[crate::state::LoggedEvent], max: usize) -> Markup {
    html! {
        p id="events-empty" class="muted" hidden[!events.is_empty()] { (T::NoEvents.get(l)) }
        div class="scroll" tabindex="0" role="region" aria-label=(T::Events.get(l)) {
            table {
                thead { tr { th scope="col" { (T::Time.get(l)) } th scope="col" { (T::Event.get(l)) } th scope="col" { (T::Name.get(l)) } th scope="col" { (T::Details.get(l)) } } }
                tbody data-list="events" data-order="newest-first" data-max=(max) data-empty="events-empty" {
                    @for e in events { (event_row(l, e)) }
                }
            }
        }
    }
}

/// Every node's VIPs: address, VRID, node, state (and, for this node,
/// why it cannot claim).
fn vip_card(
    l: Lang,
    vips: &[RemoteVip],
    reasons: &BTreeMap<(String, u8), String>,
    me: &str,
) -> Markup {
    let badge = |state: &str| {
        let (t, class) = match state {
            "master" => (T::VipMaster, "ok"),
            "backup" => (T::VipBackup, "off"),
            "fault" => (T::VipFault, "bad"),
            _ => (T::VipInit, "warn"),
        };
        html! { span class={ "badge " (class) } { (t.get(l)) } }
    };
    html! {
        section class="card" id="vips" {
            h2 id="h-vips" { (T::Vips.get(l)) }
            div class="scroll" tabindex="0" role="region" aria-labelledby="h-vips" {
                table {
                    thead { tr {
                        th scope="col" { (T::VipAddress.get(l)) }
                        th scope="col" { "VRID" }
                        th scope="col" { (T::Node.get(l)) }
                        th scope="col" { (T::VipState.get(l)) }
                    } }
                    tbody {
                        @for v in vips {
                            tr data-vip=(v.address) data-node=(v.node) data-state=(v.state) {
                                td { (v.address) }
                                td { (v.vrid) }
                                td { (v.node) }
                                td {
                                    (badge(v.state))
                                    @if v.node == me {
                                        @if let Some(r) = reasons.get(&(v.address.clone(), v.vrid)) {
                                            br; span class="muted" { (r) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// This node's Syncthing and its replicated folders (values from
/// Syncthing and the config, escaped by maud like everything else).
fn sync_card(l: Lang, s: &SyncStatus) -> Markup {
    let yes_no = |b: bool| if b { T::Yes.get(l) } else { T::No.get(l) };
    html! {
        section class="card" id="sync" {
            h2 id="h-sync" { (T::SyncFolders.get(l)) }
            p {
                @if s.syncthing.running {
                    (status_badge(l, "passing")) " " (T::SyncthingRunning.get(l))
                    @if let Some(v) = &s.syncthing.version { span class="muted" { " (" (v) ")" } }
                } @else {
                    (status_badge(l, "critical")) " " (T::SyncthingDown.get(l))
                }
            }
            @if let Some(e) = &s.syncthing.error {
                (crate::page::notice(e, true))
            }
            @if s.folders.is_empty() {
                p class="muted" { (T::SyncNoFolders.get(l)) }
            } @else {
                div class="scroll" tabindex="0" role="region" aria-labelledby="h-sync" {
                    table {
                        thead { tr {
                            th scope="col" { (T::SyncFolder.get(l)) }
                            th scope="col" { (T::SyncType.get(l)) }
                            th scope="col" { (T::Status.get(l)) }
                            th scope="col" { (T::SyncInSync.get(l)) }
                            th scope="col" { (T::SyncNeed.get(l)) }
                            th scope="col" { (T::SyncConflicts.get(l)) }
                            th scope="col" class="hide-narrow" { (T::SyncShared.get(l)) }
                        } }
                        tbody {
                            @for f in &s.folders {
                                tr data-folder=(f.id) {
                                    td { (f.id) @if let Some(e) = &f.error { br; span class="muted" { (e) } } }
                                    td {
                                        (f.kind)
                                        @if let Some(app) = &f.follow_app {
                                            br;
                                            span class="muted" {
                                                (T::SyncFollows.get(l)) " " (app)
                                                @if let Some(p) = f.app_place {
                                                    ": " (match p {
                                                        AppPlace::Here => T::SyncAppHere.get(l),
                                                        AppPlace::Elsewhere => T::SyncAppElsewhere.get(l),
                                                        AppPlace::Nowhere => T::SyncAppNowhere.get(l),
                                                    })
                                                }
                                            }
                                        }
                                    }
                                    td { (f.state) }
                                    td { (yes_no(f.in_sync)) }
                                    td { (f.need_files) }
                                    td { (f.conflicts) }
                                    td class="hide-narrow" { (f.nodes.join(", ")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vip_card_shows_every_node_and_this_node_s_reason() {
        let v = |node: &str, state| RemoteVip {
            node: node.into(),
            address: "10.1.2.100".into(),
            vrid: 51,
            state,
        };
        let reasons = BTreeMap::from([(
            ("10.1.2.100".to_owned(), 51),
            "minority side <of> a partition".to_owned(),
        )]);
        let h = vip_card(
            Lang::Es,
            &[v("a", "master"), v("b", "fault")],
            &reasons,
            "b",
        )
        .into_string();
        assert!(h.contains(r#"data-node="a" data-state="master"><td>10.1.2.100</td><td>51</td><td>a</td><td><span class="badge ok">maestro</span></td>"#), "{h}");
        assert!(h.contains("minority side &lt;of&gt; a partition"), "{h}");
        assert_eq!(h.matches("minority").count(), 1, "only this node's reason");
    }

    #[test]
    fn the_sync_card_escapes_and_shows_each_folder() {
        let s = SyncStatus {
            device_id: Some("X".into()),
            syncthing: nuvol_sync::SyncthingStatus {
                running: false,
                error: Some("Syncthing at 127.0.0.1:8384 refused the API key <b>".into()),
                ..Default::default()
            },
            folders: vec![
                nuvol_sync::FolderStatus {
                    id: "docs".into(),
                    kind: "sendonly".into(),
                    state: "idle".into(),
                    in_sync: true,
                    need_files: 3,
                    conflicts: 1,
                    nodes: vec!["b".into(), "c".into()],
                    ..Default::default()
                },
                nuvol_sync::FolderStatus {
                    id: "db".into(),
                    kind: "receiveonly".into(),
                    follow_app: Some("<db>".into()),
                    app_place: Some(AppPlace::Elsewhere),
                    ..Default::default()
                },
            ],
        };
        let h = sync_card(Lang::En, &s).into_string();
        assert!(h.contains("Syncthing not running"), "{h}");
        assert!(h.contains("refused the API key &lt;b&gt;"), "{h}");
        assert!(h.contains(r#"<tr data-folder="docs"><td>docs</td><td>sendonly</td><td>idle</td><td>yes</td><td>3</td><td>1</td>"#), "{h}");
        assert!(h.contains("b, c"));
        assert!(h.contains(r#"<td>receiveonly<br><span class="muted">follows app &lt;db&gt;: runs on another node</span></td>"#), "{h}");
        let empty = SyncStatus::default();
        assert!(sync_card(Lang::Ca, &empty)
            .into_string()
            .contains("Aquest node no comparteix cap carpeta."));
    }
}
