//! TEMPORARY: stands in for `nuvol_monitor::MonitorHandle` until it lands
//! on main; never provided, so the pages say monitoring is off.
use nuvol_monitor::view::{DeviceDetail, DeviceSummary};
use nuvol_monitor::MonitorStatus;

#[derive(Clone)]
pub struct MonitorHandle;

impl MonitorHandle {
    pub async fn devices(&self) -> Result<Vec<DeviceSummary>, String> {
        Err("not yet".into())
    }
    pub async fn device(&self, _id: &str, _step: u32) -> Result<Option<DeviceDetail>, String> {
        Err("not yet".into())
    }
    pub fn status(&self) -> MonitorStatus {
        MonitorStatus::default()
    }
}
