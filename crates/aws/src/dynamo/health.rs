//! The health records: the poller's heartbeat and each account's last contact, in one
//! partition (`HEALTH`), so `curfew health` reads them with one GetItem and one Query.

use async_trait::async_trait;
use curfew_core::health::{AccountContact, HealthStore, PollerTick};
use curfew_core::ports::PortResult;

use super::{decode, encode, DynamoStore};

const PK: &str = "HEALTH";
const HEARTBEAT: &str = "POLLER";
const CONTACT: &str = "CONTACT#";

#[async_trait]
impl HealthStore for DynamoStore {
    async fn record_poller_tick(&self, tick: &PollerTick) -> PortResult<()> {
        // Unconditional: ticks may overlap (a slow one and the next), and whichever writes
        // last is as good a heartbeat as the other.
        self.put(encode(tick)?, PK, HEARTBEAT).await
    }

    async fn poller_tick(&self) -> PortResult<Option<PollerTick>> {
        self.get(PK, HEARTBEAT).await?.map(decode).transpose()
    }

    async fn record_account_contact(&self, contact: &AccountContact) -> PortResult<()> {
        self.put(
            encode(contact)?,
            PK,
            &format!("{CONTACT}{}", contact.account),
        )
        .await
    }

    async fn account_contacts(&self) -> PortResult<Vec<AccountContact>> {
        self.query(PK, CONTACT)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }
}
