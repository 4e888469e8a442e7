//! The fleet as an alert outlet: every alert document this gateway sends
//! also goes to the incidents stream, on
//! `sensor.incidents.<site>.<gateway>.<incident uid>`, through a spool on
//! disk like the webhook's, so an outage or a restart loses none.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use super::client::{incident_subject, FleetClient};
use crate::alerts::{SendError, Sink};

/// The connection, once the fleet task has one.
pub type Slot = Arc<Mutex<Option<Arc<FleetClient>>>>;

pub struct IncidentSink {
    pub slot: Slot,
    pub runtime: tokio::runtime::Handle,
    pub site: String,
    pub gateway: String,
}

impl Sink for IncidentSink {
    fn send(&mut self, alert: &[u8]) -> Result<(), SendError> {
        let Some(client) = self.slot.lock().expect("fleet slot").clone() else {
            return Err(SendError::Retry("not connected to the fleet yet".into()));
        };
        let doc: serde_json::Value = serde_json::from_slice(alert)
            .map_err(|e| SendError::Refused(format!("not a document: {e}")))?;
        let uid = doc["sensor"]["incident"]["uid"].as_str().unwrap_or("none");
        // A uid is a UUID: one subject token.
        if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(SendError::Refused(format!(
                "{uid:?} is not an incident uid"
            )));
        }
        let subject = incident_subject(&self.site, &self.gateway, uid);
        match self
            .runtime
            .block_on(client.publish_incident(subject, &doc))
        {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().to_lowercase().contains("permission") => {
                Err(SendError::Refused(e.to_string()))
            }
            Err(e) => Err(SendError::Retry(e.to_string())),
        }
    }

    fn describe(&self) -> String {
        "the fleet's incidents stream".into()
    }

    /// A link that comes back is used within seconds: the fleet's view of
    /// incidents should not lag by minutes.
    fn max_backoff(&self) -> Duration {
        Duration::from_secs(5)
    }
}
