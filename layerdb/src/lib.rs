//! layerdb
