/**
 * A message box. `tone` is error | warning | info | success; errors and warnings are
 * announced to screen readers as they appear.
 */
export default function Notice({ tone = 'info', title, children, actions, id, focusRef }) {
  const role = tone === 'error' ? 'alert' : tone === 'warning' ? 'status' : undefined;
  return (
    <div className={`notice notice-${tone}`} role={role} id={id} ref={focusRef} tabIndex={focusRef ? -1 : undefined}>
      {title && <p className="notice-title">{title}</p>}
      {children && <div className="notice-body">{children}</div>}
      {actions && <div className="notice-actions">{actions}</div>}
    </div>
  );
}
