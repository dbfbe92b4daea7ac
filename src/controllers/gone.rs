//! Treating "already gone" (404 Not Found) as success: deletes, finalizer removals and status
//! writes of objects another actor removed first.

/// `Ok(None)` when the object was not found, else the result itself.
pub fn ok_if_gone<T>(result: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}
