//! Intel DSA driver (dedicated work queue, MEMMOVE in batches, completion-record polling).
