//! Card numbers encrypted at rest (being written).
