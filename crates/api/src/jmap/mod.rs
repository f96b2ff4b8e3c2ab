//! Method dispatch (RFC 8620 3.3-3.6): each invocation in order, result references
//! resolved against the responses so far, errors as data in the response.

use crate::auth::Principal;
use jmap_proto::{Invocation, MethodError, MethodErrorType, Request, Response, resolve_references};

/// Runs every method call of a request.
pub(crate) async fn dispatch(
    _principal: &Principal,
    request: Request,
    session_state: jmap_proto::State,
) -> Response {
    let mut response = Response::new(session_state, request.created_ids.clone());
    for call in request.method_calls {
        let Invocation {
            name,
            mut arguments,
            call_id,
        } = call;
        if let Err(e) = resolve_references(&mut arguments, &response.method_responses) {
            response.push(e.into_invocation(call_id));
            continue;
        }
        let result = match name.as_str() {
            // RFC 8620 4: echo the arguments back unchanged.
            "Core/echo" => Ok(arguments),
            _ => Err(MethodError::with_description(
                MethodErrorType::UnknownMethod,
                format!("{name} is not supported (yet)"),
            )),
        };
        match result {
            Ok(args) => response.push(Invocation::new(name, args, call_id)),
            Err(e) => response.push(e.into_invocation(call_id)),
        }
    }
    response
}
