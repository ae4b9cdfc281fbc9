//! One decorator of the spoke port for the benchmarks: [`AroundSpokes`] forwards every
//! [`Spokes`] method to the inner spokes through an [`AroundCall`], which decides what happens
//! around each call (the simulation's latency, rate limits, sessions and throttling; the plain
//! run's CPU timing). A new port method is forwarded once, here.

use std::sync::Arc;

use async_trait::async_trait;
use curfew_core::account::SpokeRole;
use curfew_core::hold::CaTag;
use curfew_core::ports::{PortResult, Spokes, UpdateState};
use curfew_core::target::{LiveState, Processes, Sizes, Target};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, TryStreamExt};

/// The inner call, made again for each attempt a decorator makes.
pub type InnerCall<'a, T> = dyn Fn() -> BoxFuture<'a, PortResult<T>> + Send + Sync + 'a;

/// What a decorator does around one spoke call in `account` and `region`.
#[async_trait]
pub trait AroundCall: Send + Sync + 'static {
    /// Makes `call` (once, or again for a retry) with what the decorator adds around it.
    async fn around<'a, T: Send + 'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        call: &'a InnerCall<'a, T>,
    ) -> PortResult<T>;

    /// After a `discover` in `account` and `region` that found `found` (one call here): a
    /// decorator that models the adapter's requests adds those the listing takes beyond the
    /// first (see `crate::sim::DiscoveryRequests`). Nothing by default.
    async fn discovered(&self, _account: &str, _region: &str, _found: &[Target]) -> PortResult<()> {
        Ok(())
    }

    /// `discover_pages` after the one call that found `found`: `found` a page at a time, each
    /// when the decorator's requests have listed it. By default one page, after
    /// [`AroundCall::discovered`].
    fn discovered_pages<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        found: Vec<Target>,
    ) -> BoxStream<'a, PortResult<Vec<Target>>> {
        Box::pin(stream::once(async move {
            self.discovered(account, region, &found).await?;
            Ok(found)
        }))
    }
}

/// `inner`'s spokes with `around` around every call.
pub struct AroundSpokes<A> {
    inner: Arc<dyn Spokes>,
    around: A,
}

impl<A: AroundCall> AroundSpokes<A> {
    /// Every call of `inner` made through `around`.
    pub fn new(inner: Arc<dyn Spokes>, around: A) -> Self {
        AroundSpokes { inner, around }
    }

    /// The decorator (its counts and settings).
    pub fn around(&self) -> &A {
        &self.around
    }
}

#[async_trait]
impl<A: AroundCall> Spokes for AroundSpokes<A> {
    async fn discover(&self, role: &SpokeRole, region: &str) -> PortResult<Vec<Target>> {
        let call = || self.inner.discover(role, region);
        let found = self.around.around(&role.account, region, &call).await?;
        self.around
            .discovered(&role.account, region, &found)
            .await?;
        Ok(found)
    }
    fn discover_pages<'a>(
        &'a self,
        role: &'a SpokeRole,
        region: &'a str,
    ) -> BoxStream<'a, PortResult<Vec<Target>>> {
        Box::pin(
            stream::once(async move {
                let call = || self.inner.discover(role, region);
                self.around.around(&role.account, region, &call).await
            })
            .map_ok(move |found| self.around.discovered_pages(&role.account, region, found))
            .try_flatten(),
        )
    }
    async fn live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState> {
        let call = || self.inner.live_state(role, target);
        self.around
            .around(&target.account, &target.region, &call)
            .await
    }
    async fn set_sizes(
        &self,
        role: &SpokeRole,
        target: &Target,
        sizes: Sizes,
    ) -> PortResult<Option<String>> {
        let call = || self.inner.set_sizes(role, target, sizes);
        self.around
            .around(&target.account, &target.region, &call)
            .await
    }
    async fn suspend_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        let call = || self.inner.suspend_processes(role, target, processes);
        self.around
            .around(&target.account, &target.region, &call)
            .await
    }
    async fn resume_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        let call = || self.inner.resume_processes(role, target, processes);
        self.around
            .around(&target.account, &target.region, &call)
            .await
    }
    async fn ca_tags(&self, role: &SpokeRole, target: &Target) -> PortResult<Vec<CaTag>> {
        let call = || self.inner.ca_tags(role, target);
        self.around
            .around(&target.account, &target.region, &call)
            .await
    }
    async fn remove_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        let call = || self.inner.remove_ca_tags(role, target, tags);
        self.around
            .around(&target.account, &target.region, &call)
            .await
    }
    async fn restore_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        let call = || self.inner.restore_ca_tags(role, target, tags);
        self.around
            .around(&target.account, &target.region, &call)
            .await
    }
    async fn update_state(
        &self,
        role: &SpokeRole,
        target: &Target,
        update_id: &str,
        planned: Sizes,
    ) -> PortResult<UpdateState> {
        let call = || self.inner.update_state(role, target, update_id, planned);
        self.around
            .around(&target.account, &target.region, &call)
            .await
    }
}
