//! Console queries of the overview pages.

macro_rules! console_overview_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {}
    };
}
pub(crate) use console_overview_queries;
