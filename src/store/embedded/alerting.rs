//! Metric series, EMQX alarms, alert rules, channels, alerts and deliveries
//! in the embedded back end.

use super::EmbeddedStore;
use async_trait::async_trait;
use ecp_actors::alerting::*;
use ecp_actors::model::Millis;
use ecp_actors::series::{Point, Tier};
use ecp_actors::store::*;

fn todo<T>() -> StoreResult<T> {
    Err(StoreError::Unavailable("not built yet".into()))
}

#[async_trait]
impl MetricStore for EmbeddedStore {
    async fn append_metrics(
        &self,
        _: &str,
        _: &[ecp_protocol::MetricSample],
        _: Millis,
        _: Millis,
    ) -> StoreResult<MetricsAppended> {
        todo()
    }
    async fn metric_points(
        &self,
        _: &str,
        _: Tier,
        _: Millis,
        _: Millis,
    ) -> StoreResult<Vec<Point>> {
        todo()
    }
    async fn latest_points(&self, _: &[String]) -> StoreResult<Vec<Option<Point>>> {
        todo()
    }
    async fn metrics_bytes(&self, _: &str) -> StoreResult<u64> {
        todo()
    }
    async fn alarms(&self, _: &str) -> StoreResult<AlarmSet> {
        todo()
    }
    async fn put_alarms(&self, _: &str, _: &AlarmSet) -> StoreResult<()> {
        todo()
    }
}

#[async_trait]
impl AlertStore for EmbeddedStore {
    async fn alert_rules(&self, _: &str) -> StoreResult<Vec<AlertRule>> {
        todo()
    }
    async fn alert_rule(&self, _: &str) -> StoreResult<Option<AlertRule>> {
        todo()
    }
    async fn put_alert_rule(&self, _: &AlertRule) -> StoreResult<()> {
        todo()
    }
    async fn delete_alert_rule(&self, _: &str) -> StoreResult<()> {
        todo()
    }
    async fn channels(&self, _: &str) -> StoreResult<Vec<ChannelRecord>> {
        todo()
    }
    async fn channel(&self, _: &str) -> StoreResult<Option<ChannelRecord>> {
        todo()
    }
    async fn put_channel(&self, _: &ChannelRecord) -> StoreResult<()> {
        todo()
    }
    async fn delete_channel(&self, _: &str) -> StoreResult<()> {
        todo()
    }
    async fn record_alert(&self, _: &AlertRecord, _: &[Delivery]) -> StoreResult<()> {
        todo()
    }
    async fn alerts(
        &self,
        _: &str,
        _: Option<AlertState>,
        _: usize,
    ) -> StoreResult<Vec<AlertRecord>> {
        todo()
    }
    async fn firing_alerts_of_cluster(&self, _: &str) -> StoreResult<Vec<AlertRecord>> {
        todo()
    }
    async fn queue_deliveries(&self, _: &[Delivery]) -> StoreResult<()> {
        todo()
    }
    async fn claim_deliveries(&self, _: Millis, _: Millis, _: usize) -> StoreResult<Vec<Delivery>> {
        todo()
    }
    async fn finish_delivery(&self, _: &Delivery) -> StoreResult<()> {
        todo()
    }
    async fn deliveries(&self, _: &str, _: usize) -> StoreResult<Vec<Delivery>> {
        todo()
    }
    async fn count_notification(&self, _: &str, _: Millis) -> StoreResult<u32> {
        todo()
    }
}
