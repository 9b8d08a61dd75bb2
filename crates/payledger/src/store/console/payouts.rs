//! Console queries of the payouts pages.

macro_rules! console_payouts_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {}
    };
}
pub(crate) use console_payouts_queries;
