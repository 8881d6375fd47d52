//! Mapping pomelo routes to gatekit's module and function.
//!
//! A pomelo route is `server.handler.method` (`chat.chatHandler.send`): the server type, then the
//! handler and method within it. gatekit routes a call to a back-end module and a function in it,
//! so the route splits at its first `.`: the server type is the module, everything after the dot
//! is the function (`chatHandler.send`).

use super::error::RouteError;

/// Splits a pomelo route at its first `.` into (module, function): `echo.handler.say` →
/// (`echo`, `handler.say`).
///
/// Refuses, with a typed error, a route with no `.` (pinus drops such a message silently), or
/// nothing before or after the first `.`. Any further dots belong to the function: pinus itself
/// needs exactly three parts and answers others with `{"code":500}`; gatekit leaves that to the
/// back end.
///
/// ```
/// use gatekit_codec::pomelo::split_route;
///
/// assert_eq!(split_route("echo.handler.say"), Ok(("echo", "handler.say")));
/// assert!(split_route("echo").is_err());
/// ```
pub fn split_route(route: &str) -> Result<(&str, &str), RouteError> {
    let err = |make: fn(String) -> RouteError| Err(make(route.to_owned()));
    match route.split_once('.') {
        None => err(|route| RouteError::NoDot { route }),
        Some(("", _)) => err(|route| RouteError::EmptyServer { route }),
        Some((_, "")) => err(|route| RouteError::EmptyHandler { route }),
        Some(parts) => Ok(parts),
    }
}

/// The route of a pomelo call to `func` in `module`: `module.func`, the inverse of [`split_route`].
pub fn join_route(module: &str, func: &str) -> String {
    format!("{module}.{func}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_dot() {
        assert_eq!(split_route("echo.handler.say"), Ok(("echo", "handler.say")));
        assert_eq!(split_route("a.b"), Ok(("a", "b")));
        assert_eq!(split_route("a.b.c.d"), Ok(("a", "b.c.d")));
        assert_eq!(split_route("聊天.h.m"), Ok(("聊天", "h.m")));
        let (m, f) = split_route("echo.handler.say").unwrap();
        assert_eq!(join_route(m, f), "echo.handler.say");
    }

    #[test]
    fn refuses_clearly() {
        assert_eq!(
            split_route("echo"),
            Err(RouteError::NoDot {
                route: "echo".into()
            })
        );
        assert_eq!(split_route(""), Err(RouteError::NoDot { route: "".into() }));
        assert_eq!(
            split_route(".h.m"),
            Err(RouteError::EmptyServer {
                route: ".h.m".into()
            })
        );
        assert_eq!(
            split_route("echo."),
            Err(RouteError::EmptyHandler {
                route: "echo.".into()
            })
        );
    }
}
