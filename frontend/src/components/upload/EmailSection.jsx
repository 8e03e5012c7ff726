import SectionTitle from './SectionTitle.jsx';

/** Section 3: the optional address that gets the results link. */
export default function EmailSection({ email, onChange, error, disabled }) {
  return (
    <section className="card" aria-labelledby="notify-title">
      <SectionTitle id="notify-title" number={3}>
        Get a link by email <span className="muted">(optional)</span>
      </SectionTitle>
      <div className="field">
        <label htmlFor="email">Email address</label>
        <input
          id="email"
          type="email"
          autoComplete="email"
          value={email}
          onChange={(e) => onChange(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? 'email-hint email-error' : 'email-hint'}
          disabled={disabled}
        />
        <p className="field-hint" id="email-hint">
          We'll send you a link to the results when they're ready. Leave it empty to just watch this page.
        </p>
        {error && (
          <p className="field-error" id="email-error">
            {error}
          </p>
        )}
      </div>
    </section>
  );
}
